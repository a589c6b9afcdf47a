// A small PNG line-chart writer for training curves (libpng + a built-in 5x7 bitmap font), so a
// run leaves a picture of its loss and accuracy without Python or matplotlib on the cluster.
//
//   dpt::PlotPanel loss{"loss", "step", {{"train", steps, losses, 0x1f77b4}}};
//   dpt::write_line_plot_png("curves.png", {loss, accuracy});
//
// Panels are drawn side by side, each with a frame, min/max tick labels on both axes, a title and a
// legend. Non-finite points are skipped. Text is upper-cased (the font has no lower case).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dpt {

struct PlotSeries {
  std::string label;
  std::vector<double> x;
  std::vector<double> y;
  uint32_t rgb = 0x1f77b4;  // 0xRRGGBB
};

struct PlotPanel {
  std::string title;
  std::string x_label;
  std::vector<PlotSeries> series;
};

// IoError naming the file when it cannot be written.
void write_line_plot_png(const std::string& path, const std::vector<PlotPanel>& panels, int panel_width = 520,
                         int height = 380);

}  // namespace dpt
