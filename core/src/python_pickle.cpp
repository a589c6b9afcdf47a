// Reading torch.save files written by Python with libtorch's unpickler.
//
// libtorch's unpickler reads what the C++ side writes and what torch.save writes for plain
// containers, but Python's state_dict() is a collections.OrderedDict carrying a `_metadata`
// attribute: the unpickler turns every OrderedDict into None (it expects one only as a tensor's
// unused backward-hooks argument) and cannot apply the attribute (pickle's BUILD). Before
// unpickling, the pickle program is rewritten opcode by opcode:
//   OrderedDict() - GLOBAL collections.OrderedDict (or a BINGET of it), EMPTY_TUPLE, REDUCE -
//                   becomes EMPTY_DICT (its items follow as SETITEMS, as for any dict);
//   BUILD         (obj, state) becomes SETITEM (obj[kDroppedStateKey] = state), the key inserted
//                 where the state's instructions begin; the key is removed after unpickling. The
//                 state is kept in the program (not cut out) because objects memoized inside it
//                 may be fetched again later. `_metadata` only records module versions; objects
//                 whose state matters are not supported by libtorch's unpickler anyway and fail
//                 earlier, at their GLOBAL. libtorch's unpickler has no POP, hence the detour.
// Every other opcode is copied unchanged. Opcode arguments are skipped by the pickle format's own
// table (protocols 0-5), so a byte pattern inside a string is never mistaken for an opcode; where
// each stack item's instructions begin is tracked from each opcode's stack effect.
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <cstring>
#include <set>
#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/serialize.h"

namespace dpt {
namespace {

uint64_t little_endian(const char* data, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) value |= static_cast<uint64_t>(static_cast<unsigned char>(data[i])) << (8 * i);
  return value;
}

// How an opcode's argument is laid out.
enum class Arg { None, Fixed, Line, TwoLines, Counted };
struct Layout {
  Arg arg;
  size_t size;  // Fixed: argument bytes; Counted: bytes of the length prefix
};

bool layout_of(unsigned char op, Layout& layout) {
  switch (op) {
    case '(': case '.': case '0': case '1': case '2': case 'N': case 'R': case 'a': case 'b': case 'd':
    case '}': case 'e': case 'l': case ']': case 'o': case 's': case 't': case ')': case 'u': case 'Q':
    case 0x81: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8f: case 0x90: case 0x91:
    case 0x92: case 0x93: case 0x94: case 0x97: case 0x98:
      layout = {Arg::None, 0};
      return true;
    case 'F': case 'I': case 'L': case 'S': case 'V': case 'P': case 'g': case 'p':
      layout = {Arg::Line, 0};
      return true;
    case 'c': case 'i':
      layout = {Arg::TwoLines, 0};
      return true;
    case 'K': case 'h': case 'q': case 0x80: case 0x82: layout = {Arg::Fixed, 1}; return true;
    case 'M': case 0x83: layout = {Arg::Fixed, 2}; return true;
    case 'J': case 'j': case 'r': case 0x84: layout = {Arg::Fixed, 4}; return true;
    case 'G': case 0x95: layout = {Arg::Fixed, 8}; return true;
    case 'U': case 'C': case 0x8c: case 0x8a: layout = {Arg::Counted, 1}; return true;
    case 'T': case 'X': case 'B': case 0x8b: layout = {Arg::Counted, 4}; return true;
    case 0x8d: case 0x8e: case 0x96: layout = {Arg::Counted, 8}; return true;
    default: return false;
  }
}

// The end of the instruction starting at `at` (its opcode included).
size_t instruction_end(const std::string& program, size_t at, const std::string& origin) {
  const auto op = static_cast<unsigned char>(program[at]);
  Layout layout{};
  DPT_CHECK(layout_of(op, layout), DataError, origin, ": unknown pickle opcode 0x", std::hex, static_cast<int>(op),
            " at byte ", std::dec, at);
  size_t end = at + 1;
  switch (layout.arg) {
    case Arg::None: break;
    case Arg::Fixed: end += layout.size; break;
    case Arg::Line: end = program.find('\n', end) + 1; break;
    case Arg::TwoLines: end = program.find('\n', program.find('\n', end) + 1) + 1; break;
    case Arg::Counted:
      DPT_CHECK(end + layout.size <= program.size(), DataError, origin, ": truncated pickle");
      end += layout.size + little_endian(program.data() + end, layout.size);
      break;
  }
  DPT_CHECK(end != 0 && end <= program.size(), DataError, origin, ": truncated pickle");
  return end;
}

size_t memo_index(const std::string& program, size_t at) {
  const auto op = static_cast<unsigned char>(program[at]);
  return little_endian(program.data() + at + 1, op == 'h' || op == 'q' ? 1 : 4);
}

const char* kDroppedStateKey = "__dptrain_dropped_pickle_state__";

// Where each stack item's instructions begin in the output program, and the open MARKs.
class StackStarts {
 public:
  explicit StackStarts(const std::string& origin) : origin_(origin) {}
  void push(size_t start) { starts_.push_back(start); }
  size_t pop() {
    DPT_CHECK(!starts_.empty(), DataError, origin_, ": malformed pickle (stack underflow)");
    const size_t start = starts_.back();
    starts_.pop_back();
    return start;
  }
  // pop n, push one item beginning where the first popped one began
  void combine(size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n; ++i) start = pop();
    push(start);
  }
  void mark(size_t at) { marks_.push_back({starts_.size(), at}); }
  // Pops the items above the last MARK; returns the MARK's own position.
  size_t pop_mark() {
    DPT_CHECK(!marks_.empty() && marks_.back().first <= starts_.size(), DataError, origin_, ": malformed pickle (MARK)");
    auto [depth, at] = marks_.back();
    marks_.pop_back();
    starts_.resize(depth);
    return at;
  }

 private:
  const std::string& origin_;
  std::vector<size_t> starts_;
  std::vector<std::pair<size_t, size_t>> marks_;
};

// The stack effect of an instruction already appended to `out` at `at` (ops the rewrite replaced
// are accounted for by the caller).
void apply_stack_effect(unsigned char op, size_t at, StackStarts& stack, const std::string& origin) {
  switch (op) {
    case '(': stack.mark(at); break;
    case 't': case 'l': case 'd': case 0x91: stack.push(stack.pop_mark()); break;
    case 'e': case 'u': case 0x90: stack.pop_mark(); break;
    case 'a': stack.pop(); break;
    case 's': stack.pop(), stack.pop(); break;
    case 0x85: stack.combine(1); break;
    case 0x86: case 'R': case 0x81: case 0x93: stack.combine(2); break;
    case 0x87: stack.combine(3); break;
    case 'Q': stack.combine(1); break;  // BINPERSID: id -> object
    case 'q': case 'r': case 'p': case 0x94: case 0x80: case 0x95: case '.': break;  // memo, framing
    case 'b': stack.pop(); break;
    case 'N': case 0x88: case 0x89: case 'K': case 'M': case 'J': case 'I': case 'L': case 0x8a: case 0x8b:
    case 'G': case 'F': case 'S': case 'T': case 'U': case 'V': case 'X': case 0x8c: case 0x8d: case 'B':
    case 'C': case 0x8e: case 0x96: case ')': case ']': case '}': case 0x8f: case 'c': case 'h': case 'j':
    case 'g': case 'P': case '2':
      stack.push(at);
      break;
    default:
      DPT_THROW(DataError, origin, ": pickle opcode 0x", std::hex, static_cast<int>(op), std::dec,
                " is not supported here (objects other than tensors and plain containers?)");
  }
}

void append_string(std::string& out, const std::string& text) {  // BINUNICODE
  out.push_back('X');
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
  out += text;
}

// LONG1 with Python's minimal little-endian two's-complement bytes (5 for 2^31) as LONG1 of 8:
// libtorch's unpickler reads only the 8-byte form, and refused every integer of 2^31 or more.
std::string widened_long1(const std::string& instruction, const std::string& origin) {
  const size_t length = static_cast<unsigned char>(instruction[1]);
  DPT_CHECK(length <= 8, DataError, origin, ": holds an integer of ", length, " bytes, beyond int64");
  if (length == 8) return instruction;
  std::string out = instruction.substr(0, 1);
  out.push_back('\x08');
  const bool negative = length > 0 && (static_cast<unsigned char>(instruction[1 + length]) & 0x80);
  out.append(instruction, 2, length);
  out.append(8 - length, negative ? '\xff' : '\x00');
  return out;
}

}  // namespace

std::string rewrite_python_pickle(const std::string& program, const std::string& origin) {
  static const std::string kOrderedDict = "ccollections\nOrderedDict\n";
  std::string out;
  out.reserve(program.size() + 256);
  StackStarts stack(origin);
  std::set<size_t> ordered_dict_memo;  // memo slots that hold the OrderedDict class
  bool pending = false;                // the OrderedDict class is on the stack, not yet called
  for (size_t at = 0; at < program.size();) {
    const size_t end = instruction_end(program, at, origin);
    const auto op = static_cast<unsigned char>(program[at]);
    const std::string instruction = program.substr(at, end - at);
    at = end;
    if (instruction == kOrderedDict ||
        ((op == 'h' || op == 'j') && ordered_dict_memo.count(memo_index(instruction, 0)))) {
      pending = true;
      continue;
    }
    if (pending && (op == 'q' || op == 'r')) {
      ordered_dict_memo.insert(memo_index(instruction, 0));  // memoizing the class itself
      continue;
    }
    if (pending && op == ')') continue;  // OrderedDict's empty argument tuple
    if (pending && op == 'R') {
      stack.push(out.size());
      out.push_back('}');  // EMPTY_DICT
      pending = false;
      continue;
    }
    DPT_CHECK(!pending, DataError, origin, ": an OrderedDict built from arguments (an older pickle) is not supported; "
              "save it as a plain dict");
    if (op == 'b') {  // BUILD -> the state under a key of the object: obj[kDroppedStateKey] = state
      const size_t state_start = stack.pop();
      std::string key;
      append_string(key, kDroppedStateKey);
      out.insert(state_start, key);
      out.push_back('s');  // SETITEM
      continue;
    }
    const size_t position = out.size();
    if (op == 0x8a) {
      out += widened_long1(instruction, origin);
    } else {
      out += instruction;
    }
    apply_stack_effect(op, position, stack, origin);
    if (op == '.') break;
  }
  return out;
}

namespace {

// Removes kDroppedStateKey from every dict (the BUILD states parked by rewrite_python_pickle).
void drop_parked_states(const c10::IValue& value) {
  if (value.isGenericDict()) {
    auto dict = value.toGenericDict();
    (void)dict.erase(std::string(kDroppedStateKey));
    for (const auto& entry : dict) drop_parked_states(entry.value());
  } else if (value.isList()) {
    for (const auto& item : value.toListRef()) drop_parked_states(item);
  } else if (value.isTuple()) {
    for (const auto& item : value.toTupleRef().elements()) drop_parked_states(item);
  }
}

}  // namespace

c10::IValue load_torch_save(const Bytes& bytes, const std::string& origin) {
  if (!is_zip_archive(bytes)) {
    // torch.save's format before PyTorch 1.6 (still written with _use_new_zipfile_serialization=
    // False) is a bare pickle stream: its first byte is pickle's PROTO opcode.
    DPT_CHECK(bytes.empty() || static_cast<unsigned char>(bytes[0]) != 0x80, DataError, origin,
              " is in torch.save's legacy format (_use_new_zipfile_serialization=False, or PyTorch before 1.6), "
              "which dptrain does not read: save it again with torch.save(torch.load(f), f)");
    DPT_THROW(DataError, origin, " is not a file torch.save wrote (no zip archive), or a damaged one");
  }
  try {
    std::istringstream stream(std::string(bytes.begin(), bytes.end()));
    caffe2::serialize::PyTorchStreamReader reader(&stream);
    auto [pickle, pickle_size] = reader.getRecord("data.pkl");
    const std::string program =
        rewrite_python_pickle(std::string(static_cast<const char*>(pickle.get()), pickle_size), origin);
    size_t position = 0;
    auto read = [&](char* buffer, size_t size) {
      const size_t n = std::min(size, program.size() - position);
      std::memcpy(buffer, program.data() + position, n);
      position += n;
      return n;
    };
    auto read_record = [&reader](const std::string& name) { return std::get<0>(reader.getRecord("data/" + name)); };
    torch::jit::Unpickler unpickler(read, /*type_resolver=*/nullptr, /*obj_loader=*/nullptr, read_record,
                                    /*device=*/std::nullopt);
    unpickler.set_version(reader.version());
    c10::IValue value = unpickler.parse_ivalue();
    drop_parked_states(value);
    return value;
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    DPT_THROW(DataError, "cannot read ", origin, " as a torch.save file: ", what.substr(0, what.find('\n')));
  }
}

}  // namespace dpt
