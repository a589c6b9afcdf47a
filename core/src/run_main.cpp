#include "dptrain/core/run_main.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <iostream>
#include <mutex>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

std::function<void(int)>& fatal_hook() {
  static std::function<void(int)> hook;
  return hook;
}

}  // namespace

void set_fatal_hook(std::function<void(int)> hook) { fatal_hook() = std::move(hook); }

void fail_fast(const std::string& message, int exit_code) {
  DPT_LOG_ERROR("error: {}", message);
  dpt::log::flush();
  if (fatal_hook()) fatal_hook()(exit_code);
  std::_Exit(exit_code);
}

int exit_code_for_current_exception() {
  try {
    throw;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::InvalidArgument) return kExitUsage;
    if (e.kind() == ErrorKind::Timeout) return kExitPeerFailure;
    return kExitError;
  } catch (...) {
    return kExitError;
  }
}

int run_main(const char* program, const std::function<int()>& body) {
  std::string message;
  int code = kExitError;
  try {
    return body();
  } catch (const Error& e) {
    message = e.what();
    code = exit_code_for_current_exception();
  } catch (const c10::Error& e) {
    message = one_line_reason(e.what_without_backtrace());
  } catch (const std::exception& e) {
    message = one_line_reason(e.what());
  } catch (...) {
    message = "unknown exception";
  }
  // Through the logger, so the line carries the rank; flushed at once because the hook may abort.
  DPT_LOG_ERROR("{}: error: {}", program, message);
  dpt::log::flush();
  if (fatal_hook()) fatal_hook()(code);
  return code;
}

}  // namespace dpt
