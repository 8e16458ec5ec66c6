#include "data/sources/thrift_compact.h"

#include <limits>

#include "core/error.h"

namespace qv::data::thrift {

namespace {

bool is_int(Type t) {
  return t == Type::kByte || t == Type::kI16 || t == Type::kI32 || t == Type::kI64;
}

bool is_known(uint8_t code) {
  return code <= static_cast<uint8_t>(Type::kStruct);
}

}  // namespace

void Reader::error(std::string_view what) const {
  fail("Thrift compact protocol: ", what, " at byte ", pos_);
}

void Reader::enter() {
  if (++depth_ > kMaxDepth) error(cat("structures nested deeper than ", kMaxDepth, " levels"));
}

uint8_t Reader::byte() {
  if (pos_ >= size_) {
    hit_end_ = true;
    error("unexpected end of data");
  }
  return data_[pos_++];
}

uint64_t Reader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const uint8_t b = byte();
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  error("varint longer than 10 bytes");
}

void Reader::expect(Type got, Type want) const {
  if (got != want)
    error(cat("type code ", static_cast<int>(got), " where ", static_cast<int>(want),
              " was expected"));
}

bool Reader::next_field(int16_t& last, Field& f) {
  const uint8_t head = byte();
  const uint8_t code = head & 0x0f;
  if (code == 0) return false;  // stop
  if (!is_known(code)) error(cat("unknown type code ", static_cast<int>(code)));
  const int delta = head >> 4;
  if (delta != 0) {
    f.id = static_cast<int16_t>(last + delta);
  } else {
    const int64_t id = zigzag();
    if (id < std::numeric_limits<int16_t>::min() || id > std::numeric_limits<int16_t>::max())
      error(cat("field id ", id, " out of range"));
    f.id = static_cast<int16_t>(id);
  }
  f.type = static_cast<Type>(code);
  last = f.id;
  return true;
}

int64_t Reader::read_int(Type t) {
  if (!is_int(t)) error(cat("type code ", static_cast<int>(t), " where an integer was expected"));
  if (t == Type::kByte) return static_cast<int8_t>(byte());
  return zigzag();
}

int32_t Reader::read_i32(Type t) {
  const int64_t v = read_int(t);
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    error(cat("value ", v, " does not fit 32 bits"));
  return static_cast<int32_t>(v);
}

bool Reader::read_bool(Type t) {
  if (t != Type::kTrue && t != Type::kFalse)
    error(cat("type code ", static_cast<int>(t), " where a bool was expected"));
  return t == Type::kTrue;
}

std::string_view Reader::read_binary(Type t) {
  expect(t, Type::kBinary);
  const uint64_t n = varint();
  if (n > size_ - pos_) {
    hit_end_ = true;
    error(cat("string of ", n, " bytes with ", size_ - pos_, " left"));
  }
  const auto* p = reinterpret_cast<const char*>(data_ + pos_);
  pos_ += n;
  return {p, static_cast<size_t>(n)};
}

int64_t Reader::read_list(Type t, Type& element) {
  if (t != Type::kList && t != Type::kSet)
    error(cat("type code ", static_cast<int>(t), " where a list was expected"));
  const uint8_t head = byte();
  const uint8_t code = head & 0x0f;
  if (!is_known(code) || code == 0) error(cat("unknown list element type ", int{code}));
  element = static_cast<Type>(code);
  uint64_t n = head >> 4;
  if (n == 15) n = varint();
  if (n > size_ - pos_) {  // every element takes at least one byte
    hit_end_ = true;
    error(cat("list of ", n, " elements with ", size_ - pos_, " bytes left"));
  }
  return static_cast<int64_t>(n);
}

void Reader::skip_element(Type t) {
  if (t == Type::kTrue || t == Type::kFalse)
    byte();
  else
    skip(t);
}

void Reader::skip(Type t) {
  switch (t) {
    case Type::kTrue:
    case Type::kFalse:
      return;
    case Type::kByte:
      byte();
      return;
    case Type::kI16:
    case Type::kI32:
    case Type::kI64:
      varint();
      return;
    case Type::kDouble:
      for (int i = 0; i < 8; ++i) byte();
      return;
    case Type::kBinary:
      read_binary(t);
      return;
    case Type::kList:
    case Type::kSet: {
      enter();
      Type element;
      const int64_t n = read_list(t, element);
      for (int64_t i = 0; i < n; ++i) skip_element(element);
      --depth_;
      return;
    }
    case Type::kMap: {
      enter();
      const uint64_t n = varint();
      if (n > 0) {
        if (n > (size_ - pos_) / 2) error(cat("map of ", n, " entries with too few bytes left"));
        const uint8_t kinds = byte();
        if (!is_known(kinds >> 4) || !is_known(kinds & 0x0f) || (kinds >> 4) == 0 ||
            (kinds & 0x0f) == 0)
          error("unknown map key or value type");
        for (uint64_t i = 0; i < n; ++i) {
          skip_element(static_cast<Type>(kinds >> 4));
          skip_element(static_cast<Type>(kinds & 0x0f));
        }
      }
      --depth_;
      return;
    }
    case Type::kStruct:
      read_struct([this](const Field& f) { skip(f.type); });
      return;
    case Type::kStop:
      break;
  }
  error("cannot skip a value of type 0");
}

}  // namespace qv::data::thrift
