//! The smallest socket API server: the socket transport and the dispatcher, no event loop
//! library. It answers `control_ping` and the other memclnt basics for one client at a time.
//!
//! `cargo run -p vlibsocket --example minimal_server -- /tmp/minimal/api.sock`

use std::time::Duration;

use vlibapi::dispatch::{Outbox, SendError};
use vlibapi::{ApiBuilder, ClientIndex, MessageTable};
use vlibsocket::server::{Accepted, Flow, Outputs, ReadStatus, SocketConfig, SocketServer};

struct Out<'a, 'b>(&'a mut Outputs<'b>);

impl Outbox for Out<'_, '_> {
    fn send(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
        self.0
            .send(to, msg)
            .then_some(())
            .ok_or(SendError::UnknownClient(to))
    }
    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        self.0.for_each_client(f)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/minimal/api.sock".into());
    let mut api = ApiBuilder::with_table(MessageTable::new());
    api.add_memclnt_handlers(std::process::id())?;
    let mut dispatcher = api.build();
    let table = dispatcher.table().sockclnt_entries();
    let mut server = SocketServer::bind(SocketConfig::new(&path))?;
    println!("listening on {path}");
    loop {
        // A real server waits in epoll; polling keeps the example short.
        while let Some(Accepted::Client(c)) = server.accept()? {
            println!("client {:#x} connected", c.0);
        }
        for c in server.clients() {
            if let ReadStatus::Closed(_) = server.read(c) {
                server.close(c);
                continue;
            }
            let processed = server.process(c, 64, |frame, session, out| {
                if vlibapi::wire::msg_id(frame) == Some(15) {
                    // sockclnt_create: answer with the message table.
                    use vlibapi::wire::Message;
                    let req =
                        vlibapi::msgs::memclnt::SockclntCreate::decode(frame).unwrap_or_default();
                    session.name = req.name;
                    session.registered = true;
                    let reply = vlibapi::msgs::memclnt::SockclntCreateReply {
                        context: req.context,
                        index: session.index().0,
                        count: table.len() as u16,
                        message_table: table.clone(),
                        ..Default::default()
                    };
                    if let Ok(bytes) = vlibapi::wire::to_vec(&reply, 16) {
                        out.send(session.index(), &bytes);
                    }
                } else {
                    let _ = dispatcher.dispatch(session.index(), frame, &mut Out(out));
                }
                Flow::Continue
            });
            // A client that breaks the rules, or stops reading, is dropped; the others carry on.
            if processed.is_err() || server.flush(c).is_err() {
                server.close(c);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
