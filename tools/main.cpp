// The cdquant CLI: parses options, calls the library, prints. No logic lives here.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cdquant/error.hpp>
#include <cdquant/output_file.hpp>
#include <new>

#include "commands.hpp"
#ifdef CDQ_HAVE_MPI
#include "mpi/mpi_session.hpp"
#endif

int main(int argc, char** argv) {
  cdq::install_output_signal_handlers();  // SIGINT / SIGTERM leave no temporary outputs
#ifdef CDQ_HAVE_MPI
  // Under mpirun every rank runs this program; an error on one rank ends them all (the others
  // may be waiting on it), with the rank and the message.
  cdq::MpiSession mpi(argc, argv);
  if (mpi.size() > 1) cdq::cli::set_communicator(&mpi);
  const auto fail = [&](const char* what) {
    if (mpi.size() > 1) mpi.abort(what);
    fmt::print(stderr, "error: {}\n", what);
    return 1;
  };
#else
  const auto fail = [](const char* what) {
    fmt::print(stderr, "error: {}\n", what);
    return 1;
  };
#endif
  CLI::App app{"cdquant: post-training weight quantization (RTN, GPTQ, CDQuant)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cdquant 0.1.0");
  cdq::cli::register_commands(app, argc > 0 ? argv[0] : "");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const cdq::Error& e) {
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    // The sizes were checked where they are known; this is the last resort, for sizes no
    // check foresaw.
    return fail(
        "out of memory: a size the input files or the options ask for is more than this "
        "machine can allocate");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
