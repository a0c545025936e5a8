//! Test harness: the workspace test kit's platform under test
//! (`zerofn_testkit::platform`), and the binary cargo built for these tests.

pub use zerofn_testkit::guest;
pub use zerofn_testkit::platform::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_zerofn");
