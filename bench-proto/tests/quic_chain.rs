//! The QUIC protocols' shared chain suites (`support::quic`), one test each
//! per protocol: bulk over one connection, bad request headers, UDP round
//! trips. Each protocol's own checks are in its `*_chain.rs`.

mod support;

use support::hysteria1::Hysteria1;
use support::hysteria2::Hysteria2;
use support::quic::*;
use support::tuic::Tuic;

/// The suites for one protocol: one test each.
macro_rules! suites {
    ($name:ident, $case:ty) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn bulk_64_mib_each_way_over_many_streams_of_one_connection() {
                bulk_over_one_connection::<$case>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_requests_reset_their_stream_and_the_server_keeps_serving() {
                bad_requests_reset_their_stream::<$case>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn udp_round_trips_with_fragmentation_in_separate_sessions() {
                udp_sessions_stay_apart::<$case>().await;
            }
        }
    };
}

suites!(tuic, Tuic);
suites!(hysteria2, Hysteria2);
suites!(hysteria1, Hysteria1);
