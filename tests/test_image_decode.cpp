// Image decoding: JPEG against Pillow's decode of real cc12m images, PNG/WebP/JPEG colour
// handling against Pillow's convert("RGB") rules, and hostile or broken input.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "data/image/image_decode.h"
#include "image_test_encoders.h"
#include "image_test_utils.h"
#include "io/safetensors.h"

namespace qv::data {
namespace {

using qv::testing::compare_bytes;
using qv::testing::file_bytes;

RgbImage decode(const std::vector<uint8_t>& bytes, const DecodeLimits& limits = {}) {
  return decode_image(bytes.data(), bytes.size(), limits, "test image");
}

// Runs `fn`, expecting a qv::Error whose message contains `needle`.
template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ImageDecode, JpegMatchesPillowOnCc12mImages) {
  int checked = 0;
  for (const std::string& key : qv::testing::image_fixture_keys()) {
    io::SafetensorsFile fixture(qv::testing::image_fixture_dir() + "/" + key + ".safetensors");
    if (!fixture.has("rgb_uint8")) continue;
    const Tensor expected = fixture.read("rgb_uint8");
    const RgbImage img = decode(file_bytes(qv::testing::test_image_path(key)));
    ASSERT_EQ(img.height, expected.dim(0)) << key;
    ASSERT_EQ(img.width, expected.dim(1)) << key;
    const auto* p = expected.data<uint8_t>();
    const auto d = compare_bytes(img.pixels, std::vector<uint8_t>(p, p + expected.numel()));
    EXPECT_EQ(d.max, 0) << key << ": " << d.differing << " values differ, mean " << d.mean;
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST(ImageDecode, HeaderInfoWithoutDecoding) {
  const auto bytes = file_bytes(qv::testing::test_image_path("000000018"));
  const ImageInfo info = read_image_info(bytes.data(), bytes.size());
  EXPECT_EQ(info.format, ImageFormat::kJpeg);
  EXPECT_EQ(info.width, 500);  // settings.json: size_wh [500, 668]
  EXPECT_EQ(info.height, 668);
}

TEST(ImageDecode, DetectsFormatByMagicBytes) {
  const uint8_t jpeg[] = {0xff, 0xd8, 0xff, 0xe0};
  const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const uint8_t webp[] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P'};
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
  EXPECT_EQ(detect_image_format(jpeg, sizeof jpeg), ImageFormat::kJpeg);
  EXPECT_EQ(detect_image_format(png, sizeof png), ImageFormat::kPng);
  EXPECT_EQ(detect_image_format(webp, sizeof webp), ImageFormat::kWebp);
  EXPECT_EQ(detect_image_format(gif, sizeof gif), ImageFormat::kUnknown);
  EXPECT_EQ(detect_image_format(jpeg, 2), ImageFormat::kUnknown);
  expect_error([&] { decode(std::vector<uint8_t>(gif, gif + sizeof gif)); },
               "not a JPEG, PNG or WebP");
}

// ---- broken and hostile input ----

TEST(ImageDecode, RejectsEmptyAndRandomBytes) {
  expect_error([] { decode({}); }, "empty image data");
  std::mt19937 rng(1234);
  std::vector<uint8_t> noise(4096);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  noise[0] = 0x00;  // not accidentally a magic number
  expect_error([&] { decode(noise); }, "not a JPEG, PNG or WebP");
  // Valid magic followed by garbage reaches each codec, which must fail cleanly.
  for (const std::vector<uint8_t>& magic :
       {std::vector<uint8_t>{0xff, 0xd8, 0xff},
        std::vector<uint8_t>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'},
        std::vector<uint8_t>{'R', 'I', 'F', 'F', 0xff, 0x0f, 0, 0, 'W', 'E', 'B', 'P'}}) {
    std::vector<uint8_t> bytes = magic;
    bytes.insert(bytes.end(), noise.begin(), noise.end());
    EXPECT_THROW(decode(bytes), Error);
    EXPECT_THROW(read_image_info(bytes.data(), bytes.size()), Error);
  }
}

TEST(ImageDecode, RejectsTruncatedJpeg) {
  for (const char* key : {"000000018", "000000001"}) {  // baseline, progressive
    auto bytes = file_bytes(qv::testing::test_image_path(key));
    bytes.resize(bytes.size() / 2);
    expect_error([&] { decode(bytes); }, "truncated JPEG");
    bytes.resize(40);  // inside the headers
    expect_error([&] { decode(bytes); }, "test image");
  }
}

TEST(ImageDecode, RejectsOversizedJpegBeforeDecoding) {
  auto bytes = file_bytes(qv::testing::test_image_path("000000018"));
  // Patch the baseline SOF0 frame size to 60000 x 60000 (3.6e9 pixels).
  size_t sof = 0;
  for (size_t i = 2; i + 9 < bytes.size(); ++i)
    if (bytes[i] == 0xff && bytes[i + 1] == 0xc0) {
      sof = i;
      break;
    }
  ASSERT_GT(sof, 0u);
  for (size_t off : {sof + 5, sof + 7}) {
    bytes[off] = 60000 >> 8;
    bytes[off + 1] = 60000 & 0xff;
  }
  expect_error([&] { decode(bytes); }, "exceeds the limit of 100000000 pixels");
  const ImageInfo info = read_image_info(bytes.data(), bytes.size());
  EXPECT_EQ(info.width, 60000);
}

std::vector<uint8_t> png_header_only(uint32_t width, uint32_t height) {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
  const size_t type_at = b.size();
  b.insert(b.end(), {'I', 'H', 'D', 'R'});
  for (uint32_t v : {width, height})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
  b.insert(b.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, not interlaced
  const uint32_t crc = qv::testing::png_crc(b.data() + type_at, b.size() - type_at);
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(crc >> s));
  return b;
}

TEST(ImageDecode, RejectsHugePngHeaderBeforeAllocating) {
  // A valid IHDR claiming 100000 x 100000 (30 GB of RGB) and no image data: the limit must
  // trip on the header alone.
  const auto bytes = png_header_only(100000, 100000);
  expect_error([&] { decode(bytes); }, "100000x100000 = 10000000000 pixels exceeds the limit");
  const ImageInfo info = read_image_info(bytes.data(), bytes.size());
  EXPECT_EQ(info.format, ImageFormat::kPng);
  EXPECT_EQ(info.width, 100000);
  // Within the limit the same header fails for want of data, not size.
  expect_error([&] { decode(png_header_only(10, 10)); }, "truncated PNG");
}

TEST(ImageDecode, PixelLimitIsConfigurable) {
  const std::vector<uint8_t> rgb(20 * 10 * 3, 7);
  qv::testing::PngSpec spec{20, 10, PNG_COLOR_TYPE_RGB, 8, false, rgb, {}, {}};
  const auto png = qv::testing::encode_png(spec);
  const auto jpg = qv::testing::encode_jpeg(rgb, 20, 10, 3, 90);
  const auto webp = qv::testing::encode_webp_lossless(rgb, 20, 10, false);
  DecodeLimits tight;
  tight.max_pixels = 199;
  for (const auto* bytes : {&png, &jpg, &webp}) {
    EXPECT_NO_THROW(decode(*bytes));
    expect_error([&] { decode(*bytes, tight); }, "20x10 = 200 pixels exceeds the limit of 199");
  }
}

TEST(ImageDecode, RejectsTruncatedAndCorruptPng) {
  std::vector<uint8_t> rgb(64 * 64 * 3);
  std::mt19937 rng(7);
  for (auto& v : rgb) v = static_cast<uint8_t>(rng());
  auto png = qv::testing::encode_png({64, 64, PNG_COLOR_TYPE_RGB, 8, false, rgb, {}, {}});
  ASSERT_FALSE(png.empty());
  EXPECT_EQ(decode(png).pixels, rgb);
  auto cut = png;
  cut.resize(png.size() * 2 / 3);
  expect_error([&] { decode(cut); }, "truncated PNG");
  auto bad_crc = png;
  bad_crc[8 + 8 + 13] ^= 0xff;  // the IHDR CRC
  expect_error([&] { decode(bad_crc); }, "PNG decode failed");
}

TEST(ImageDecode, RejectsTruncatedWebpAndAnimatedWebp) {
  const std::vector<uint8_t> rgb(32 * 32 * 3, 99);
  auto webp = qv::testing::encode_webp_lossless(rgb, 32, 32, false);
  auto cut = webp;
  cut.resize(webp.size() - 8);
  expect_error([&] { decode(cut); }, "WebP");
  // Extended-format header (VP8X) with the animation flag and an empty ANIM chunk.
  std::vector<uint8_t> anim = {'R', 'I', 'F', 'F', 0, 0,    0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8',
                               'X', 10,  0,   0,   0, 0x02, 0, 0, 0,   31,  0,   0,   31,  0,   0,
                               'A', 'N', 'I', 'M', 6, 0,    0, 0, 0,   0,   0,   0,   0,   0};
  const uint32_t riff = static_cast<uint32_t>(anim.size() - 8);
  for (int i = 0; i < 4; ++i) anim[4 + i] = static_cast<uint8_t>(riff >> (8 * i));
  expect_error([&] { decode(anim); }, "animated WebP is not supported");
}

// ---- colour handling, Pillow's convert("RGB") rules ----

TEST(ImageDecode, PngColourTypesConvertLikePillow) {
  const int w = 9, h = 5;
  std::mt19937 rng(42);
  auto random_bytes = [&](size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
  };
  auto gray_rgb = [&](const std::vector<uint8_t>& g, int step) {  // replicate every step-th byte
    std::vector<uint8_t> out;
    for (size_t i = 0; i < g.size(); i += step) out.insert(out.end(), {g[i], g[i], g[i]});
    return out;
  };
  for (bool interlaced : {false, true}) {
    SCOPED_TRACE(interlaced ? "interlaced" : "progressive rows");
    // 8-bit gray: replicated.
    auto g8 = random_bytes(w * h);
    EXPECT_EQ(decode(qv::testing::encode_png({w, h, 0, 8, interlaced, g8, {}, {}})).pixels,
              gray_rgb(g8, 1));
    // Gray + alpha: alpha dropped, not composited.
    auto ga = random_bytes(w * h * 2);
    EXPECT_EQ(decode(qv::testing::encode_png(
                         {w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 8, interlaced, ga, {}, {}}))
                  .pixels,
              gray_rgb(ga, 2));
    // RGBA: alpha dropped.
    auto rgba = random_bytes(w * h * 4);
    std::vector<uint8_t> rgb;
    for (size_t i = 0; i < rgba.size(); i += 4) rgb.insert(rgb.end(), &rgba[i], &rgba[i] + 3);
    EXPECT_EQ(
        decode(qv::testing::encode_png({w, h, PNG_COLOR_TYPE_RGBA, 8, interlaced, rgba, {}, {}}))
            .pixels,
        rgb);
    // 16-bit RGB and RGBA: Pillow keeps the high byte of each sample.
    auto rgb16 = random_bytes(w * h * 6);
    std::vector<uint8_t> high;
    for (size_t i = 0; i < rgb16.size(); i += 2) high.push_back(rgb16[i]);
    EXPECT_EQ(
        decode(qv::testing::encode_png({w, h, PNG_COLOR_TYPE_RGB, 16, interlaced, rgb16, {}, {}}))
            .pixels,
        high);
    auto rgba16 = random_bytes(w * h * 8);
    high.clear();
    for (size_t i = 0; i < rgba16.size(); i += 8)
      high.insert(high.end(), {rgba16[i], rgba16[i + 2], rgba16[i + 4]});
    EXPECT_EQ(
        decode(qv::testing::encode_png({w, h, PNG_COLOR_TYPE_RGBA, 16, interlaced, rgba16, {}, {}}))
            .pixels,
        high);
    // 16-bit gray: Pillow opens it as 32-bit "I" and clips to 0..255 when converting.
    std::vector<uint8_t> g16;
    std::vector<uint8_t> clipped;
    for (int i = 0; i < w * h; ++i) {
      const int v = i % 3 == 0 ? int(rng() % 256) : int(rng() % 65536);  // some below 256
      g16.insert(g16.end(), {uint8_t(v >> 8), uint8_t(v & 0xff)});
      const uint8_t c = static_cast<uint8_t>(v > 255 ? 255 : v);
      clipped.insert(clipped.end(), {c, c, c});
    }
    EXPECT_EQ(decode(qv::testing::encode_png({w, h, 0, 16, interlaced, g16, {}, {}})).pixels,
              clipped);
  }
}

TEST(ImageDecode, PngLowBitDepthsAndPalettes) {
  const int w = 8, h = 2;  // 8 pixels a row: whole bytes at every depth
  for (int depth : {1, 2, 4}) {
    SCOPED_TRACE(depth);
    const int levels = 1 << depth, per_byte = 8 / depth;
    std::vector<uint8_t> packed, expected;
    for (int y = 0; y < h; ++y)
      for (int byte = 0; byte < w / per_byte; ++byte) {
        uint8_t b = 0;
        for (int k = 0; k < per_byte; ++k) {
          const int v = (y * w + byte * per_byte + k) % levels;
          b |= static_cast<uint8_t>(v << (8 - depth * (k + 1)));
          const uint8_t g = static_cast<uint8_t>(v * 255 / (levels - 1));  // Pillow's scaling
          expected.insert(expected.end(), {g, g, g});
        }
        packed.push_back(b);
      }
    EXPECT_EQ(decode(qv::testing::encode_png({w, h, 0, depth, false, packed, {}, {}})).pixels,
              expected);
  }
  // Palette with transparency: plain lookup, alpha dropped.
  std::vector<png_color> palette;
  for (int i = 0; i < 16; ++i)
    palette.push_back({uint8_t(i * 16), uint8_t(255 - i * 7), uint8_t(i * i)});
  std::vector<uint8_t> alpha(16, 0);
  std::vector<uint8_t> indices, expected;
  for (int i = 0; i < w * h; ++i) {
    const int idx = (i * 5) % 16;
    indices.push_back(static_cast<uint8_t>(idx));
    expected.insert(expected.end(), {palette[idx].red, palette[idx].green, palette[idx].blue});
  }
  EXPECT_EQ(decode(qv::testing::encode_png(
                       {w, h, PNG_COLOR_TYPE_PALETTE, 8, false, indices, palette, alpha}))
                .pixels,
            expected);
}

// Pillow's CMYK -> RGB on the inverted ("CMYK;I") values libjpeg returns.
std::vector<uint8_t> pillow_cmyk_to_rgb(const std::vector<uint8_t>& stored) {
  std::vector<uint8_t> rgb;
  for (size_t i = 0; i < stored.size(); i += 4) {
    const int k = 255 - stored[i + 3];
    for (int c = 0; c < 3; ++c) {
      const int ink = 255 - stored[i + c];
      const int tmp = ink * (255 - k) + 128;
      const int v = (255 - k) - (((tmp >> 8) + tmp) >> 8);
      rgb.push_back(static_cast<uint8_t>(std::clamp(v, 0, 255)));
    }
  }
  return rgb;
}

TEST(ImageDecode, JpegGrayAndCmykConvertLikePillow) {
  // 16x16 of four constant 8x8 blocks: quality 100 reproduces constant blocks exactly.
  const int n = 16;
  const uint8_t block_cmyk[4][4] = {
      {0, 0, 0, 0}, {255, 255, 255, 255}, {30, 200, 90, 170}, {250, 10, 128, 60}};
  std::vector<uint8_t> cmyk, gray;
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      const int b = (y / 8) * 2 + x / 8;
      cmyk.insert(cmyk.end(), block_cmyk[b], block_cmyk[b] + 4);
      gray.push_back(static_cast<uint8_t>(40 + 60 * b));
    }
  const RgbImage from_cmyk = decode(qv::testing::encode_jpeg(cmyk, n, n, 4, 100));
  EXPECT_EQ(from_cmyk.pixels, pillow_cmyk_to_rgb(cmyk));
  // YCCK goes through a lossy colour transform (integer YCbCr round trip); libjpeg turns it back
  // into CMYK before the same inversion, so the result is within one step of the CMYK one.
  const RgbImage from_ycck = decode(qv::testing::encode_jpeg(cmyk, n, n, 4, 100, true));
  const auto d = compare_bytes(from_ycck.pixels, pillow_cmyk_to_rgb(cmyk));
  EXPECT_LE(d.max, 1);
  std::vector<uint8_t> gray_rgb;
  for (uint8_t g : gray) gray_rgb.insert(gray_rgb.end(), {g, g, g});
  EXPECT_EQ(decode(qv::testing::encode_jpeg(gray, n, n, 1, 100)).pixels, gray_rgb);
}

TEST(ImageDecode, WebpLosslessRoundTrip) {
  const int w = 13, h = 7;
  std::mt19937 rng(3);
  std::vector<uint8_t> rgba(w * h * 4), rgb;
  for (size_t i = 0; i < rgba.size(); ++i)
    rgba[i] = static_cast<uint8_t>(i % 4 == 3 ? 1 + rng() % 255 : rng());  // no fully clear pixel
  for (size_t i = 0; i < rgba.size(); i += 4) rgb.insert(rgb.end(), &rgba[i], &rgba[i] + 3);
  EXPECT_EQ(decode(qv::testing::encode_webp_lossless(rgb, w, h, false)).pixels, rgb);
  EXPECT_EQ(decode(qv::testing::encode_webp_lossless(rgba, w, h, true)).pixels, rgb);
  const auto bytes = qv::testing::encode_webp_lossless(rgb, w, h, false);
  const ImageInfo info = read_image_info(bytes.data(), bytes.size());
  EXPECT_EQ(info.format, ImageFormat::kWebp);
  EXPECT_EQ(info.width, w);
  EXPECT_EQ(info.height, h);
}

TEST(ImageDecode, TinyOnePixelImages) {
  const std::vector<uint8_t> px = {10, 200, 30};
  EXPECT_EQ(
      decode(qv::testing::encode_png({1, 1, PNG_COLOR_TYPE_RGB, 8, false, px, {}, {}})).pixels, px);
  EXPECT_EQ(decode(qv::testing::encode_webp_lossless(px, 1, 1, false)).pixels, px);
  const RgbImage j = decode(qv::testing::encode_jpeg(px, 1, 1, 3, 95));
  EXPECT_EQ(j.width, 1);
  EXPECT_EQ(j.height, 1);
}

}  // namespace
}  // namespace qv::data

namespace qv::data {
namespace {

// Flipped bytes and cut tails in real files: every variant either decodes or throws qv::Error
// (run under the sanitizer build, this also checks nothing reads or writes out of bounds).
TEST(ImageDecode, SurvivesRandomCorruption) {
  std::vector<uint8_t> rgb(48 * 40 * 3);
  std::mt19937 rng(99);
  for (auto& v : rgb) v = static_cast<uint8_t>(rng() % 64 + (&v - rgb.data()) % 192);
  const std::vector<std::vector<uint8_t>> originals = {
      qv::testing::file_bytes(qv::testing::test_image_path("000000001")),  // progressive
      qv::testing::encode_jpeg(rgb, 48, 40, 3, 85),
      qv::testing::encode_png({48, 40, PNG_COLOR_TYPE_RGB, 8, true, rgb, {}, {}}),
      qv::testing::encode_webp_lossless(rgb, 48, 40, false)};
  int decoded = 0, rejected = 0;
  for (const auto& original : originals)
    for (int trial = 0; trial < 150; ++trial) {
      std::vector<uint8_t> bytes = original;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int f = 0; f < flips; ++f)
        bytes[4 + rng() % (bytes.size() - 4)] = static_cast<uint8_t>(rng());  // keep the magic
      if (trial % 3 == 0) bytes.resize(4 + rng() % (bytes.size() - 4));
      try {
        const RgbImage img = decode_image(bytes.data(), bytes.size(), {}, "corrupt");
        EXPECT_EQ(img.pixels.size(), size_t(img.width) * img.height * 3);
        ++decoded;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
        ++rejected;
      }
    }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(decoded, 0);
}

}  // namespace
}  // namespace qv::data
