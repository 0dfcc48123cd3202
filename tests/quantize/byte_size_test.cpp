// Sizes on the command line: units, decimals, rounding down, and what is refused.
#include "quantize/byte_size.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace piquant {
namespace {

TEST(ByteSize, ParsesBytesAndUnits) {
  EXPECT_EQ(parse_byte_size("0"), 0u);
  EXPECT_EQ(parse_byte_size("5699712"), 5699712u);
  EXPECT_EQ(parse_byte_size("12B"), 12u);
  EXPECT_EQ(parse_byte_size("1KB"), 1000u);
  EXPECT_EQ(parse_byte_size("1KiB"), 1024u);
  EXPECT_EQ(parse_byte_size("2MB"), 2000000u);
  EXPECT_EQ(parse_byte_size("2MiB"), 2097152u);
  EXPECT_EQ(parse_byte_size("4.3GB"), 4300000000u);
  EXPECT_EQ(parse_byte_size("3.5GiB"), 3758096384u);  // 3.5 × 1073741824
  EXPECT_EQ(parse_byte_size("3.5 GiB"), 3758096384u);
  EXPECT_EQ(parse_byte_size("3.5gib"), 3758096384u);
  EXPECT_EQ(parse_byte_size(".5KiB"), 512u);
  EXPECT_EQ(parse_byte_size("1TiB"), 1099511627776u);
}

TEST(ByteSize, RoundsDownToWholeBytes) {
  EXPECT_EQ(parse_byte_size("1.0009KB"), 1000u);   // 1000.9 bytes
  EXPECT_EQ(parse_byte_size("0.1KiB"), 102u);      // 102.4 bytes
  EXPECT_EQ(parse_byte_size("1.9999999999B"), 1u);
  EXPECT_EQ(parse_byte_size("0.000000001GB"), 1u);  // exactly 1 byte, no float rounding below it
}

TEST(ByteSize, RefusesWhatIsNotASize) {
  for (const char* bad : {"", "GiB", "-1", "1e9", "3.5XB", "3..5GB", "1.2.3", "12 ", "12  GB", "1,5GB", "0x10",
                          "99999999999999999999999999"}) {
    EXPECT_THROW(parse_byte_size(bad), Error) << bad;
  }
  EXPECT_THROW(parse_byte_size("16777216TiB"), Error);  // 2^64 bytes
  EXPECT_EQ(parse_byte_size("18446744073709551615"), 18446744073709551615u);
  try {
    parse_byte_size("3.5XB");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3.5XB"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("GiB"), std::string::npos) << e.what();  // lists the units
  }
}

TEST(ByteSize, FormatsExactCountAndBinaryUnit) {
  EXPECT_EQ(format_byte_size(512), "512 bytes");
  EXPECT_EQ(format_byte_size(5699712), "5699712 bytes (5.436 MiB)");
  EXPECT_EQ(format_byte_size(3758096384u), "3758096384 bytes (3.500 GiB)");
}

}  // namespace
}  // namespace piquant
