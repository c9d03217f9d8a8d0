// The cdquant CLI: parses options, calls the library, prints. No logic lives here.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cdquant/error.hpp>
#include <new>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"cdquant: post-training weight quantization (RTN, GPTQ, CDQuant)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cdquant 0.1.0");
  cdq::cli::register_commands(app, argc > 0 ? argv[0] : "");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const cdq::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    // The sizes were checked where they are known; this is the last resort, for sizes no
    // check foresaw.
    fmt::print(stderr,
               "error: out of memory: a size the input files or the options ask for is more "
               "than this machine can allocate\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
