//! Every protocol's endpoint processes through the same suites
//! (`support::harness`): relaying between two processes and exiting 0 on
//! signals, bad command lines exiting 2 with one line, wrong credentials
//! refused, and garbage dropped while the server keeps serving.
//!
//! Protocol-specific wire checks (truncated frames, unknown types, oversized
//! lengths, each protocol's own refusal) live in the `*_chain` tests, where
//! the endpoints run in process and raw clients speak the wire by hand.

mod support;

use support::cases;
use support::harness::*;

/// The suites for one case: one test each.
macro_rules! suites {
    ($name:ident, $case:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn relays_between_processes_and_exits_0_on_signals() {
                relay_between_processes(&$case).await;
            }

            #[test]
            fn bad_options_exit_2_with_one_line() {
                bad_options_exit_2(&$case);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn wrong_credentials_are_refused_and_the_server_serves_on() {
                wrong_credentials_are_refused(&$case).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn garbage_is_dropped_and_the_server_serves_on() {
                garbage_is_dropped(&$case).await;
            }
        }
    };
}

suites!(tls, cases::tls());
suites!(ech, cases::ech());
suites!(ssh_password, cases::ssh(false));
suites!(ssh_key, cases::ssh(true));
suites!(tuic, cases::tuic());
suites!(hysteria1, cases::hysteria1(false));
suites!(hysteria1_xplus, cases::hysteria1(true));
suites!(hysteria2, cases::hysteria2(false));
suites!(hysteria2_salamander_brutal, cases::hysteria2(true));
suites!(reality, cases::reality());

/// A REALITY key may start with `-` in base64url (1 in 64): the endpoints
/// take it as `--reality-key`'s value, not as a flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reality_keys_that_start_with_a_hyphen_are_values() {
    relay_between_processes(&cases::reality_with(
        cases::RealityKeys::with_leading_hyphens(),
    ))
    .await;
}
