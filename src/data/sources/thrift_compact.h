// Reading Apache Thrift's compact protocol, the encoding of Parquet's footer and page headers.
// A bounded cursor over bytes in memory: every read checks what is left and throws qv::Error
// saying what was being read and at which byte. Structures are walked field by field; a caller
// reads the fields it knows and skips the rest. Nesting is bounded (kMaxDepth), so hostile input
// cannot exhaust the stack; containers are never materialised by skip().
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace qv::data::thrift {

// Compact protocol type codes (field headers and container element types).
enum class Type : uint8_t {
  kStop = 0,
  kTrue = 1,  // a bool field's value lives in its type code
  kFalse = 2,
  kByte = 3,
  kI16 = 4,
  kI32 = 5,
  kI64 = 6,
  kDouble = 7,
  kBinary = 8,
  kList = 9,
  kSet = 10,
  kMap = 11,
  kStruct = 12,
};

struct Field {
  int16_t id = 0;
  Type type = Type::kStop;
};

class Reader {
 public:
  static constexpr int kMaxDepth = 32;

  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t position() const { return pos_; }
  // True when the cursor ran past what it was given only because the input ended there (a
  // caller reading from a growing window can retry with more bytes).
  bool hit_end() const { return hit_end_; }

  // Walks one struct: calls on_field(Field) for each field, which must consume the value (a
  // read_* call matching field.type, or skip(field.type)).
  template <typename F>
  void read_struct(F&& on_field) {
    enter();
    int16_t last = 0;
    Field f;
    while (next_field(last, f)) on_field(f);
    --depth_;
  }

  // Integers of any width (byte, i16, i32, i64); the type is the field's, checked.
  int64_t read_int(Type t);
  int32_t read_i32(Type t);  // read_int, checked to fit 32 bits
  bool read_bool(Type t);    // a bool field: the value is its type code
  std::string_view read_binary(Type t);
  // A list or set header: returns the element count (checked against the bytes left, each
  // element taking at least one byte except bools) and sets `element`.
  int64_t read_list(Type t, Type& element);
  void skip(Type t);

  // Throws qv::Error: "<what> at byte <pos>".
  [[noreturn]] void error(std::string_view what) const;

 private:
  bool next_field(int16_t& last, Field& f);
  void enter();
  uint8_t byte();
  uint64_t varint();
  int64_t zigzag() {
    const uint64_t v = varint();
    return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
  }
  void expect(Type got, Type want) const;
  void skip_element(Type t);  // a container element (bools take a byte there)

  const uint8_t* data_;
  size_t size_, pos_ = 0;
  int depth_ = 0;
  bool hit_end_ = false;
};

}  // namespace qv::data::thrift
