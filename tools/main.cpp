// The cdquant CLI: parses options, calls the library, prints. No logic lives here.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cdquant/error.hpp>
#include <cdquant/output_file.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  cdq::install_output_signal_handlers();  // SIGINT / SIGTERM leave no temporary outputs
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
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
