//! The smallest client: connect, ping, print the server's pid and a few message IDs.
//!
//! `cargo run -p vlibsocket --example ping_client -- /tmp/minimal/api.sock`

use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
use vlibsocket::client::SocketClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/minimal/api.sock".into());
    let mut client = SocketClient::connect(&path, "ping-client")?;
    let reply: ControlPingReply = client.request(&ControlPing::default())?;
    println!(
        "connected as {:#x}; the server (pid {}) knows {} messages",
        client.client_index(),
        reply.vpe_pid,
        client.table().len()
    );
    client.disconnect()?;
    Ok(())
}
