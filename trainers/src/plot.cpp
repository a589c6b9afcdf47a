#include "dptrain/trainers/plot.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// 5x7 glyphs, one byte per row, top row first, bit 4 = leftmost pixel.
const std::map<char, std::array<uint8_t, 7>>& font() {
  static const std::map<char, std::array<uint8_t, 7>> glyphs = {
      {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
      {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
      {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
      {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
      {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
      {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
      {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
      {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
      {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
      {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
      {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
      {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
      {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
      {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
      {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
      {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
      {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
      {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
      {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
      {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
      {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
  };
  return glyphs;
}

constexpr int kGlyphWidth = 6;  // 5 pixels + 1 spacing

class Canvas {
 public:
  Canvas(int width, int height) : width_(width), height_(height), pixels_(static_cast<size_t>(width * height) * 3, 255) {}

  void set(int x, int y, uint32_t rgb) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    size_t at = (static_cast<size_t>(y) * width_ + x) * 3;
    pixels_[at] = (rgb >> 16) & 0xff;
    pixels_[at + 1] = (rgb >> 8) & 0xff;
    pixels_[at + 2] = rgb & 0xff;
  }

  // Bresenham, `thickness` pixels wide.
  void line(int x0, int y0, int x1, int y1, uint32_t rgb, int thickness = 1) {
    int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int error = dx + dy;
    while (true) {
      for (int t = 0; t < thickness; ++t) {
        set(x0, y0 + t, rgb);
        set(x0 + t, y0, rgb);
      }
      if (x0 == x1 && y0 == y1) break;
      int twice = 2 * error;
      if (twice >= dy) error += dy, x0 += sx;
      if (twice <= dx) error += dx, y0 += sy;
    }
  }

  void rect(int x0, int y0, int x1, int y1, uint32_t rgb) {
    line(x0, y0, x1, y0, rgb);
    line(x1, y0, x1, y1, rgb);
    line(x1, y1, x0, y1, rgb);
    line(x0, y1, x0, y0, rgb);
  }

  void fill(int x0, int y0, int x1, int y1, uint32_t rgb) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, rgb);
  }

  void text(int x, int y, const std::string& text, uint32_t rgb) {
    for (char raw : text) {
      char c = static_cast<char>(std::toupper(static_cast<unsigned char>(raw)));
      auto glyph = font().find(c);
      if (glyph != font().end()) {
        for (int row = 0; row < 7; ++row)
          for (int col = 0; col < 5; ++col)
            if (glyph->second[row] & (0x10 >> col)) set(x + col, y + row, rgb);
      }
      x += kGlyphWidth;
    }
  }

  void save(const std::string& path) const {
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
    DPT_CHECK(file, IoError, "cannot write plot ", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    DPT_CHECK(png && info, IoError, "libpng could not start writing ", path);
    if (setjmp(png_jmpbuf(png))) {
      png_destroy_write_struct(&png, &info);
      DPT_THROW(IoError, "libpng failed writing ", path);
    }
    png_init_io(png, file.get());
    png_set_IHDR(png, info, width_, height_, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height_; ++y) {
      png_write_row(png, const_cast<png_bytep>(pixels_.data() + static_cast<size_t>(y) * width_ * 3));
    }
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
  }

 private:
  int width_;
  int height_;
  std::vector<uint8_t> pixels_;
};

std::string format_number(double value) {
  char text[32];
  double magnitude = std::fabs(value);
  if (magnitude != 0 && (magnitude >= 1e5 || magnitude < 1e-3)) std::snprintf(text, sizeof(text), "%.2e", value);
  else if (magnitude >= 100) std::snprintf(text, sizeof(text), "%.0f", value);
  else std::snprintf(text, sizeof(text), "%.3g", value);
  return text;
}

void draw_panel(Canvas& canvas, const PlotPanel& panel, int left, int width, int height) {
  const uint32_t axis = 0x333333, grid = 0xdddddd;
  const int margin_left = 62, margin_right = 14, margin_top = 28, margin_bottom = 40;
  int x0 = left + margin_left, x1 = left + width - margin_right, y0 = margin_top, y1 = height - margin_bottom;

  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& series : panel.series) {
    for (size_t i = 0; i < series.x.size() && i < series.y.size(); ++i) {
      if (!std::isfinite(series.x[i]) || !std::isfinite(series.y[i])) continue;
      xmin = std::min(xmin, series.x[i]), xmax = std::max(xmax, series.x[i]);
      ymin = std::min(ymin, series.y[i]), ymax = std::max(ymax, series.y[i]);
    }
  }
  canvas.text(left + (width - kGlyphWidth * static_cast<int>(panel.title.size())) / 2, 10, panel.title, axis);
  canvas.text(x0 + (x1 - x0 - kGlyphWidth * static_cast<int>(panel.x_label.size())) / 2, height - 16, panel.x_label,
              axis);
  if (!std::isfinite(xmin)) {
    canvas.rect(x0, y0, x1, y1, axis);
    canvas.text(x0 + 10, y0 + 10, "no data", axis);
    return;
  }
  if (xmax == xmin) xmin -= 0.5, xmax += 0.5;
  if (ymax == ymin) ymin -= 0.5, ymax += 0.5;
  double pad = (ymax - ymin) * 0.05;
  ymin -= pad, ymax += pad;
  auto px = [&](double x) { return x0 + static_cast<int>(std::lround((x - xmin) / (xmax - xmin) * (x1 - x0))); };
  auto py = [&](double y) { return y1 - static_cast<int>(std::lround((y - ymin) / (ymax - ymin) * (y1 - y0))); };

  for (int i = 1; i < 4; ++i) {
    int gy = y0 + (y1 - y0) * i / 4, gx = x0 + (x1 - x0) * i / 4;
    canvas.line(x0, gy, x1, gy, grid);
    canvas.line(gx, y0, gx, y1, grid);
  }
  canvas.rect(x0, y0, x1, y1, axis);
  for (int i = 0; i <= 4; ++i) {
    double y = ymin + (ymax - ymin) * i / 4;
    std::string label = format_number(y);
    canvas.text(x0 - 4 - kGlyphWidth * static_cast<int>(label.size()), py(y) - 3, label, axis);
    canvas.line(x0 - 3, py(y), x0, py(y), axis);
  }
  std::string left_label = format_number(xmin), right_label = format_number(xmax);
  canvas.text(x0, y1 + 6, left_label, axis);
  canvas.text(x1 - kGlyphWidth * static_cast<int>(right_label.size()), y1 + 6, right_label, axis);

  int legend_y = y0 + 6;
  for (const auto& series : panel.series) {
    bool have_previous = false;
    int previous_x = 0, previous_y = 0;
    size_t points = std::min(series.x.size(), series.y.size());
    for (size_t i = 0; i < points; ++i) {
      if (!std::isfinite(series.x[i]) || !std::isfinite(series.y[i])) continue;
      int x = px(series.x[i]), y = py(series.y[i]);
      if (have_previous) canvas.line(previous_x, previous_y, x, y, series.rgb, 2);
      if (points <= 40) canvas.fill(x - 2, y - 2, x + 2, y + 2, series.rgb);
      previous_x = x, previous_y = y, have_previous = true;
    }
    int legend_x = x1 - 10 - kGlyphWidth * static_cast<int>(series.label.size()) - 18;
    canvas.fill(legend_x, legend_y + 2, legend_x + 12, legend_y + 4, series.rgb);
    canvas.text(legend_x + 16, legend_y, series.label, axis);
    legend_y += 12;
  }
}

}  // namespace

void write_line_plot_png(const std::string& path, const std::vector<PlotPanel>& panels, int panel_width, int height) {
  DPT_CHECK(!panels.empty() && panel_width >= 160 && height >= 120, InvalidArgumentError,
            "plot ", path, ": needs at least one panel of at least 160x120 pixels");
  Canvas canvas(panel_width * static_cast<int>(panels.size()), height);
  for (size_t i = 0; i < panels.size(); ++i) draw_panel(canvas, panels[i], static_cast<int>(i) * panel_width, panel_width, height);
  canvas.save(path);
}

}  // namespace dpt
