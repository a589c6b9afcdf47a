#include <zip.h>

#include <memory>

#include "dptrain/core/error.h"
#include "dptrain/core/serialize.h"

namespace dpt {
namespace {

struct ZipDiscard {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
struct ZipFileClose {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};

std::string error_text(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string text = zip_error_strerror(&error);
  zip_error_fini(&error);
  return text;
}

}  // namespace

bool is_zip_archive(const Bytes& bytes) {
  return bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K' && bytes[2] == 3 && bytes[3] == 4;
}

void verify_zip_archive(const Bytes& bytes, const std::string& origin) {
  DPT_CHECK(is_zip_archive(bytes), DataError, origin, " is not a zip archive (torch.save format)");
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), /*freep=*/0, &error);
  DPT_CHECK(source != nullptr, DataError, origin, ": ", zip_error_strerror(&error));
  std::unique_ptr<zip_t, ZipDiscard> archive(zip_open_from_source(source, ZIP_RDONLY, &error));
  if (!archive) {
    zip_source_free(source);
    std::string reason = zip_error_strerror(&error);
    zip_error_fini(&error);
    DPT_THROW(DataError, origin, " is truncated or corrupt: ", reason);
  }
  const zip_int64_t records = zip_get_num_entries(archive.get(), 0);
  std::vector<char> buffer(1 << 20);
  for (zip_int64_t i = 0; i < records; ++i) {
    const char* name = zip_get_name(archive.get(), static_cast<zip_uint64_t>(i), 0);
    const std::string record = name ? name : "#" + std::to_string(i);
    std::unique_ptr<zip_file_t, ZipFileClose> file(zip_fopen_index(archive.get(), static_cast<zip_uint64_t>(i), 0));
    DPT_CHECK(file != nullptr, DataError, origin, " is corrupt: record ", record, ": ",
              zip_strerror(archive.get()));
    zip_int64_t n = 0;
    // libzip compares the CRC when the last byte of a record has been read.
    while ((n = zip_fread(file.get(), buffer.data(), buffer.size())) > 0) {
    }
    DPT_CHECK(n == 0, DataError, origin, " is corrupt: record ", record, ": ", zip_file_strerror(file.get()));
    const int closed = zip_fclose(file.release());
    DPT_CHECK(closed == 0, DataError, origin, " is corrupt: record ", record, ": ", error_text(closed));
  }
}

}  // namespace dpt
