//! A plugin's own event source: an eventfd watched by the server's loop, whose callback sends
//! an event to every client, over socket and shared memory alike.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use vlib_server::server::{Plugin, PluginRegistrar, Server, ServerBuildError};
use vlibapi::msgs::vlib_api::ApiClientDetails;
use vlibapi::wire::Message;
use vlibsocket::client::SocketClient;
use vppinfra::testing::TempDir;

/// Broadcasts an `api_client_details` named "tick" each time its eventfd is written.
struct Ticker {
    fd: OwnedFd,
}

impl Plugin for Ticker {
    fn name(&self) -> &str {
        "ticker"
    }

    fn install(self: Box<Self>, r: &mut PluginRegistrar<'_>) -> Result<(), ServerBuildError> {
        r.watch_fd("ticker", self.fd, |fd, ctx| {
            // Level-triggered: drain the counter, or the loop calls again at once.
            let mut count = [0u8; 8];
            let _ = nix::unistd::read(fd, &mut count);
            let tick = ApiClientDetails {
                name: format!("tick {}", u64::from_ne_bytes(count)),
                ..Default::default()
            };
            ctx.broadcast(&tick);
        });
        Ok(())
    }
}

#[test]
fn a_plugin_event_source_reaches_socket_and_shm_clients() {
    let dir = TempDir::new("event_source");
    let path = dir.join("api.sock");
    let efd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).unwrap();
    let writer = efd.as_fd().try_clone_to_owned().unwrap();
    let plugin_fd: OwnedFd = efd.into();
    let (tx, rx) = std::sync::mpsc::channel();
    let server_path = path.clone();
    let server = std::thread::spawn(move || {
        let mut s = Server::builder()
            .socket_path(&server_path)
            .log_level(vlib_server::log::Level::Warn)
            .plugin(Ticker { fd: plugin_fd })
            .build()
            .unwrap();
        tx.send(s.shutdown_handle()).unwrap();
        s.run().unwrap();
    });
    let stop = rx.recv().unwrap();
    let mut sock = SocketClient::connect(&path, "sock").unwrap();
    let mut shm = SocketClient::connect(&path, "shm").unwrap();
    shm.pivot(1 << 20, None).unwrap();
    nix::unistd::write(&writer, &3u64.to_ne_bytes()).unwrap();
    for c in [&mut sock, &mut shm] {
        let e = c
            .next_event(Duration::from_secs(5))
            .unwrap()
            .expect("tick event");
        let tick = ApiClientDetails::decode(&e.bytes).unwrap();
        assert_eq!(tick.name, "tick 3");
    }
    // Drained: no second event without a second write.
    assert!(
        sock.next_event(Duration::from_millis(100))
            .unwrap()
            .is_none()
    );
    stop.shutdown();
    server.join().unwrap();
}
