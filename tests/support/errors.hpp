// The message of the cdq::Error a call throws, for tests of bad input.
#pragma once

#include <functional>
#include <string>

namespace cdq::test {

// e.what() of the cdq::Error that f throws, or "(no error)" when it returns normally (other
// exception types propagate, so a wrong kind of failure still fails the test).
std::string error_of(const std::function<void()>& f);

}  // namespace cdq::test
