// dptrain's communicators as PyTorch c10d process groups, found by name.
//
// A program compiled by AOTInductor whose graph holds PyTorch's functional collectives
// (torch.ops._c10d_functional.all_reduce, all_gather_into_tensor, reduce_scatter_tensor,
// broadcast, each followed by wait_tensor) calls libtorch's c10d ops, which look their process
// group up by the name baked into the graph (c10d::resolve_process_group). Registering a
// Communicator under that name makes those collectives run on dptrain's MPI or NCCL communicator,
// with no Python and no second transport (issue 36: gradients reduced from inside a compiled
// training step). Note [c10d groups over a Communicator] in src/c10d/process_group.cpp.
#pragma once

#include <memory>
#include <string>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

// Registers `comm` under `name` in c10d's group registry (process-wide, per name) for as long as
// the returned handle lives; the handle's destructor unregisters it. A name registered already is
// an InvalidArgumentError. Collectives issued through the group run on `comm`, in the order they
// are issued, as every other collective of `comm`.
class C10dGroupRegistration {
 public:
  C10dGroupRegistration(const std::string& name, std::shared_ptr<Communicator> comm);
  ~C10dGroupRegistration();
  C10dGroupRegistration(const C10dGroupRegistration&) = delete;
  C10dGroupRegistration& operator=(const C10dGroupRegistration&) = delete;

  const std::string& name() const { return name_; }

 private:
  struct Group;  // the c10d::ProcessGroup (c10d's registry holds it weakly: this keeps it alive)
  std::string name_;
  std::unique_ptr<Group> group_;
};

}  // namespace dpt
