// dpt::detect_launch: each launcher's variables, precedence, and bad values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "dptrain/core/error.h"
#include "dptrain/parallel/runtime/launch_info.h"

namespace dpt {
namespace {

// Sets the given variables (and clears every other launcher variable) for one test.
class ScopedLaunchEnv {
 public:
  explicit ScopedLaunchEnv(const std::map<std::string, std::string>& values) {
    for (const char* name : kNames) {
      if (const char* old = std::getenv(name)) saved_[name] = old;
      unsetenv(name);
    }
    for (const auto& [name, value] : values) setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedLaunchEnv() {
    for (const char* name : kNames) unsetenv(name);
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
  }

 private:
  static constexpr const char* kNames[] = {
      "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
      "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "SLURM_PROCID", "SLURM_NTASKS",
      "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
      "MASTER_ADDR", "MASTER_PORT"};
  std::map<std::string, std::string> saved_;
};

TEST(LaunchInfo, NoLauncherIsOneProcess) {
  ScopedLaunchEnv env({});
  auto info = detect_launch();
  EXPECT_EQ(info.launcher, "none");
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.world_size, 1);
  EXPECT_EQ(info.local_rank, 0);
}

TEST(LaunchInfo, OpenMpi) {
  ScopedLaunchEnv env({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                       {"RANK", "0"}, {"WORLD_SIZE", "1"}});  // MPI wins over torchrun-style leftovers
  auto info = detect_launch();
  EXPECT_EQ(info.launcher, "mpi");
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 4);
}

TEST(LaunchInfo, MpichPmi) {
  ScopedLaunchEnv env({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}, {"MPI_LOCALRANKID", "0"}, {"MPI_LOCALNRANKS", "1"}});
  auto info = detect_launch();
  EXPECT_EQ(info.launcher, "mpi");
  EXPECT_EQ(info.rank, 2);
  EXPECT_EQ(info.world_size, 3);
}

TEST(LaunchInfo, Slurm) {
  ScopedLaunchEnv env({{"SLURM_PROCID", "7"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "3"},
                       {"SLURM_NTASKS_PER_NODE", "4(x4)"}});
  auto info = detect_launch();
  EXPECT_EQ(info.launcher, "slurm");
  EXPECT_EQ(info.rank, 7);
  EXPECT_EQ(info.world_size, 16);
  EXPECT_EQ(info.local_rank, 3);
  EXPECT_EQ(info.local_world_size, 4);
}

TEST(LaunchInfo, TorchrunStyle) {
  ScopedLaunchEnv env({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                       {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "29500"}});
  auto info = detect_launch();
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.world_size, 4);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 2);
  EXPECT_EQ(info.master_addr, "10.1.2.3");
  EXPECT_EQ(info.master_port, 29500);
}

TEST(LaunchInfo, TorchrunWithoutLocalRankIsOneNode) {
  ScopedLaunchEnv env({{"RANK", "2"}, {"WORLD_SIZE", "3"}});
  auto info = detect_launch();
  EXPECT_EQ(info.local_rank, 2);
  EXPECT_EQ(info.local_world_size, 3);
}

TEST(LaunchInfo, BadValuesAreClearErrors) {
  {
    ScopedLaunchEnv env({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
    EXPECT_THROW(detect_launch(), InvalidArgumentError);
  }
  {
    ScopedLaunchEnv env({{"RANK", "0"}, {"WORLD_SIZE", "two"}});
    try {
      detect_launch();
      FAIL();
    } catch (const InvalidArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find("WORLD_SIZE"), std::string::npos) << e.what();
    }
  }
  {
    ScopedLaunchEnv env({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "70000"}});
    EXPECT_THROW(detect_launch(), InvalidArgumentError);
  }
}

}  // namespace
}  // namespace dpt
