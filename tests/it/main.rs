//! tandem's integration tests: one binary, one module per feature. Every test
//! runs a real server on 127.0.0.1 with an OS-chosen port and talks to it over
//! TCP with a hand-written HTTP/1 client: the test kit (`tests/kit`, the
//! `kit` crate), which the browser tests and loadgen share.

mod classroom;
mod client;
mod cobrowse;
mod cobrowse_redis;
mod connections;
mod cors;
mod echo;
mod fuzz_regressions;
mod heads;
mod heartbeat;
mod hostile;
mod http10;
mod keepalive;
mod library;
mod limits;
mod longpoll;
mod ops;
mod proxy;
mod publish;
mod redis;
mod redis_cluster;
mod resume;
mod shared_view;
mod shutdown;
mod tls;
mod tokens;
mod transports;
