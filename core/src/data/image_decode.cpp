// PNG and JPEG decoding for ImageFolderDataset: libpng's simplified API and libjpeg(-turbo), whose
// fatal errors are turned into a longjmp back here (libjpeg's default handler calls exit()).
#include <jpeglib.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "dptrain/core/data/image_folder.h"
#include "dptrain/core/error.h"

namespace dpt {
namespace {

const unsigned char* data_of(const Bytes& b) { return reinterpret_cast<const unsigned char*>(b.data()); }
bool is_png(const Bytes& b) { return b.size() >= 8 && png_sig_cmp(data_of(b), 0, 8) == 0; }
bool is_jpeg(const Bytes& b) {
  return b.size() >= 3 && data_of(b)[0] == 0xFF && data_of(b)[1] == 0xD8 && data_of(b)[2] == 0xFF;
}

torch::Tensor decode_png(const Bytes& bytes, int64_t channels, const std::string& origin) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data_of(bytes), bytes.size())) {
    DPT_THROW(DataError, origin, ": not a readable PNG (", image.message, ")");
  }
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  auto out = torch::empty({image.height, image.width, channels}, torch::kUInt8);
  if (!png_image_finish_read(&image, nullptr, out.data_ptr(), 0, nullptr)) {
    std::string message = image.message;
    png_image_free(&image);
    DPT_THROW(DataError, origin, ": truncated or corrupt PNG (", message, ")");
  }
  return out;
}

struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}

void jpeg_quiet(j_common_ptr /*info*/, int /*level*/) {}  // warnings (e.g. extraneous bytes) are not errors

ImageHeader png_header(const Bytes& bytes, const std::string& origin) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data_of(bytes), bytes.size())) {
    DPT_THROW(DataError, origin, ": not a readable PNG (", image.message, ")");
  }
  ImageHeader header{static_cast<int64_t>(image.width), static_cast<int64_t>(image.height), false};
  png_image_free(&image);
  return header;
}

// libjpeg's state with its errors routed to jpeg_fail. The caller sets `errors.jump` (setjmp) and
// then calls read_header; libjpeg's failures land there.
struct JpegSource {
  jpeg_decompress_struct info;
  JpegErrors errors;
  JpegSource() {
    info.err = jpeg_std_error(&errors.manager);
    errors.manager.error_exit = jpeg_fail;
    errors.manager.emit_message = jpeg_quiet;
  }
  void read_header(const Bytes& bytes) {
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data_of(bytes), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&info, TRUE);
  }
};

ImageHeader jpeg_header(const Bytes& bytes, const std::string& origin) {
  JpegSource jpeg;
  if (setjmp(jpeg.errors.jump)) {
    jpeg_destroy_decompress(&jpeg.info);
    DPT_THROW(DataError, origin, ": truncated or corrupt JPEG (", jpeg.errors.message, ")");
  }
  jpeg.read_header(bytes);
  const auto& info = jpeg.info;
  ImageHeader header{static_cast<int64_t>(info.image_width), static_cast<int64_t>(info.image_height),
                     info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK};
  jpeg_destroy_decompress(&jpeg.info);
  return header;
}

torch::Tensor decode_jpeg(const Bytes& bytes, int64_t channels, const std::string& origin) {
  JpegSource jpeg;
  auto& info = jpeg.info;
  torch::Tensor out;  // constructed before setjmp; only assigned after it
  if (setjmp(jpeg.errors.jump)) {
    jpeg_destroy_decompress(&info);
    DPT_THROW(DataError, origin, ": truncated or corrupt JPEG (", jpeg.errors.message, ")");
  }
  jpeg.read_header(bytes);
  info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  out = torch::empty({info.output_height, info.output_width, channels}, torch::kUInt8);
  const auto row_bytes = static_cast<size_t>(info.output_width) * static_cast<size_t>(channels);
  auto* base = out.data_ptr<uint8_t>();
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = base + static_cast<size_t>(info.output_scanline) * row_bytes;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return out;
}

}  // namespace

ImageHeader read_image_header(const Bytes& bytes, const std::string& origin) {
  if (is_png(bytes)) return png_header(bytes, origin);
  if (is_jpeg(bytes)) return jpeg_header(bytes, origin);
  DPT_THROW(DataError, origin, ": neither a PNG nor a JPEG file");
}

void check_image_header(const ImageHeader& header, int64_t max_pixels, const std::string& origin) {
  DPT_CHECK(max_pixels <= 0 || header.width * header.height <= max_pixels, DataError, origin, ": ", header.width,
            " x ", header.height, " pixels, more than --max-image-pixels ", max_pixels,
            " (a decompression bomb, or raise the limit)");
  DPT_CHECK(!header.cmyk, DataError, origin, ": a CMYK JPEG, which dptrain does not convert; convert it to RGB "
            "(PIL: Image.open(f).convert(\"RGB\").save(f), or ImageMagick: convert f -colorspace sRGB f)");
}

torch::Tensor decode_image(const Bytes& bytes, int64_t channels, const std::string& origin, int64_t max_pixels) {
  DPT_CHECK(channels == 1 || channels == 3, InvalidArgumentError, "decode_image: channels must be 1 or 3, got ",
            channels);
  check_image_header(read_image_header(bytes, origin), max_pixels, origin);
  if (is_png(bytes)) return decode_png(bytes, channels, origin);
  if (is_jpeg(bytes)) return decode_jpeg(bytes, channels, origin);
  DPT_THROW(DataError, origin, ": neither a PNG nor a JPEG file");
}

}  // namespace dpt
