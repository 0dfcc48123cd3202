// GgufValue: types, typed access with range checks, arrays, rendering.
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_test_bytes.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using testing::contains;

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GgufValue, TypeNamesMatchSpecIds) {
  // Ids as listed in the GGUF specification.
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(0)), "UINT8");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(6)), "FLOAT32");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(7)), "BOOL");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(8)), "STRING");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(9)), "ARRAY");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(10)), "UINT64");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(12)), "FLOAT64");
  EXPECT_STREQ(gguf_type_name(static_cast<GgufType>(13)), "UNKNOWN");
}

TEST(GgufValue, ConstructorsPickTheType) {
  EXPECT_EQ(GgufValue(std::uint8_t{1}).type(), GgufType::UINT8);
  EXPECT_EQ(GgufValue(std::int8_t{1}).type(), GgufType::INT8);
  EXPECT_EQ(GgufValue(std::uint16_t{1}).type(), GgufType::UINT16);
  EXPECT_EQ(GgufValue(std::int16_t{1}).type(), GgufType::INT16);
  EXPECT_EQ(GgufValue(std::uint32_t{1}).type(), GgufType::UINT32);
  EXPECT_EQ(GgufValue(std::int32_t{1}).type(), GgufType::INT32);
  EXPECT_EQ(GgufValue(std::uint64_t{1}).type(), GgufType::UINT64);
  EXPECT_EQ(GgufValue(std::int64_t{1}).type(), GgufType::INT64);
  EXPECT_EQ(GgufValue(1.0f).type(), GgufType::FLOAT32);
  EXPECT_EQ(GgufValue(1.0).type(), GgufType::FLOAT64);
  EXPECT_EQ(GgufValue(true).type(), GgufType::BOOL);
  EXPECT_EQ(GgufValue("x").type(), GgufType::STRING);
  EXPECT_EQ(GgufValue(std::string("x")).type(), GgufType::STRING);
  EXPECT_TRUE(GgufValue(std::int16_t{1}).is_integer());
  EXPECT_FALSE(GgufValue(true).is_integer());
  EXPECT_FALSE(GgufValue(1.0f).is_integer());
  EXPECT_TRUE(GgufValue(1.0f).is_float());
  EXPECT_FALSE(GgufValue(std::uint64_t{1}).is_float());
}

TEST(GgufValue, IntegerAccessChecksRange) {
  EXPECT_EQ(GgufValue(std::uint8_t{255}).as_int(), 255);
  EXPECT_EQ(GgufValue(std::int8_t{-128}).as_int(), -128);
  EXPECT_EQ(GgufValue(std::uint32_t{4000000000u}).as_int(), 4000000000LL);
  EXPECT_EQ(GgufValue(std::int64_t{std::numeric_limits<std::int64_t>::min()}).as_int(),
            std::numeric_limits<std::int64_t>::min());
  const auto max_signed = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(GgufValue(max_signed).as_int(), std::numeric_limits<std::int64_t>::max());
  EXPECT_TRUE(contains(error_of([&] { GgufValue(max_signed + 1).as_int(); }), "9223372036854775808"));
  EXPECT_EQ(GgufValue(std::numeric_limits<std::uint64_t>::max()).as_uint(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(GgufValue(std::uint16_t{7}).as_uint(), 7u);
  EXPECT_TRUE(contains(error_of([] { GgufValue(std::int32_t{-1}).as_uint(); }), "negative"));
  EXPECT_TRUE(contains(error_of([] { GgufValue(1.5f).as_int(); }), "found FLOAT32"));
  EXPECT_THROW(GgufValue(true).as_int(), Error);
}

TEST(GgufValue, OtherAccessorsNameExpectedAndActualType) {
  EXPECT_DOUBLE_EQ(GgufValue(1.5f).as_float(), 1.5);
  EXPECT_DOUBLE_EQ(GgufValue(0.1).as_float(), 0.1);
  EXPECT_DOUBLE_EQ(GgufValue(std::int32_t{-3}).as_float(), -3.0);
  EXPECT_DOUBLE_EQ(GgufValue(std::numeric_limits<std::uint64_t>::max()).as_float(), 18446744073709551615.0);
  EXPECT_TRUE(GgufValue(true).as_bool());
  EXPECT_EQ(GgufValue("abc").as_string(), "abc");

  const std::string msg = error_of([] { GgufValue(std::uint32_t{1}).as_string(); });
  EXPECT_TRUE(contains(msg, "STRING"));
  EXPECT_TRUE(contains(msg, "UINT32"));
  EXPECT_TRUE(contains(error_of([] { GgufValue("x").as_float(); }), "found STRING"));
  EXPECT_TRUE(contains(error_of([] { GgufValue(std::uint8_t{1}).as_bool(); }), "expected BOOL, found UINT8"));
  EXPECT_TRUE(contains(error_of([] { GgufValue("x").as_array(); }), "expected ARRAY"));
}

TEST(GgufValue, ArraysCheckElementTypes) {
  const GgufValue ints = GgufValue::int32_array({1, -2, 3});
  EXPECT_TRUE(ints.is_array());
  EXPECT_EQ(ints.element_type(), GgufType::INT32);
  EXPECT_EQ(ints.as_int_array(), (std::vector<std::int64_t>{1, -2, 3}));
  EXPECT_EQ(GgufValue::string_array({"a", ""}).as_string_array(), (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(GgufValue::float32_array({0.5f, -1.0f}).as_float_array(), (std::vector<float>{0.5f, -1.0f}));

  const std::string msg = error_of([] {
    GgufValue::array(GgufType::UINT32, {GgufValue(std::uint32_t{1}), GgufValue(std::int32_t{2})});
  });
  EXPECT_TRUE(contains(msg, "element 1"));
  EXPECT_TRUE(contains(msg, "INT32"));
  EXPECT_THROW(GgufValue::array(static_cast<GgufType>(13), {}), Error);

  // Arrays of arrays: each inner array has its own element type, as GGUF encodes it.
  const GgufValue nested = GgufValue::array(
      GgufType::ARRAY, {GgufValue::int32_array({1, 2}), GgufValue::string_array({"x"}), GgufValue::array(GgufType::BOOL, {})});
  EXPECT_EQ(nested.as_array().size(), 3u);
  EXPECT_EQ(nested.as_array()[1].as_string_array(), std::vector<std::string>{"x"});
  EXPECT_THROW(GgufValue::array(GgufType::ARRAY, {GgufValue("not an array")}), Error);

  EXPECT_TRUE(contains(error_of([&] { ints.as_string_array(); }), "ARRAY of INT32"));
  EXPECT_THROW(GgufValue::string_array({"a"}).as_int_array(), Error);
  EXPECT_THROW(ints.as_float_array(), Error);
  EXPECT_THROW(GgufValue(std::int32_t{1}).as_int_array(), Error);
  // Range checks reach into arrays.
  const GgufValue big = GgufValue::array(GgufType::UINT64, {GgufValue(std::numeric_limits<std::uint64_t>::max())});
  EXPECT_THROW(big.as_int_array(), Error);
}

TEST(GgufValue, ToStringRendersAndShortens) {
  EXPECT_EQ(GgufValue(std::int32_t{-7}).to_string(), "-7");
  EXPECT_EQ(GgufValue(std::uint8_t{200}).to_string(), "200");
  EXPECT_EQ(GgufValue(std::numeric_limits<std::uint64_t>::max()).to_string(), "18446744073709551615");
  EXPECT_EQ(GgufValue(1.5f).to_string(), "1.5");
  EXPECT_EQ(GgufValue(0.1f).to_string(), "0.1");  // shortest form that reads back as the same float
  EXPECT_EQ(GgufValue(0.1).to_string(), "0.1");
  EXPECT_EQ(GgufValue(false).to_string(), "false");
  EXPECT_EQ(GgufValue("a\"b\n\x01").to_string(), "\"a\\\"b\\n\\x01\"");
  EXPECT_EQ(GgufValue("Ġhello").to_string(), "\"Ġhello\"");
  EXPECT_EQ(GgufValue::int32_array({1, 2}).to_string(), "[1, 2]");
  EXPECT_EQ(GgufValue::array(GgufType::STRING, {}).to_string(), "[]");

  std::vector<std::int32_t> many(20);
  for (int i = 0; i < 20; ++i) many[i] = i + 1;
  EXPECT_EQ(GgufValue::int32_array(many).to_string(3), "[1, 2, 3, ... 17 more]");
  EXPECT_EQ(GgufValue::int32_array(many).to_string(0), "[... 20 more]");
  const GgufValue nested =
      GgufValue::array(GgufType::ARRAY, {GgufValue::int32_array({1, 2, 3}), GgufValue::string_array({"x"})});
  EXPECT_EQ(nested.to_string(2), "[[1, 2, ... 1 more], [\"x\"]]");
}

TEST(GgufValue, EqualityComparesTypeAndValue) {
  EXPECT_EQ(GgufValue(std::uint32_t{1}), GgufValue(std::uint32_t{1}));
  EXPECT_NE(GgufValue(std::uint32_t{1}), GgufValue(std::int32_t{1}));
  EXPECT_NE(GgufValue(std::uint32_t{1}), GgufValue(std::uint32_t{2}));
  EXPECT_EQ(GgufValue::string_array({"a"}), GgufValue::string_array({"a"}));
  EXPECT_NE(GgufValue::array(GgufType::STRING, {}), GgufValue::array(GgufType::INT32, {}));
}

}  // namespace
}  // namespace piquant
