//! The connection core over shared memory against the real `api-server`: a pivot in the middle
//! of a stream of events loses none of them (those read with the pivot's reply, and those the
//! server keeps sending to the socket registration afterwards, arrive as well), requests then
//! go through the segment with the new client index, and closing removes both registrations.

mod support;

use std::time::{Duration, Instant};

use example_plugin::msgs as ex;
use support::ServerProc;
use vlibapi::msgs::{memclnt, vpe};
use vlibapi::wire::{self, Message};
use vlibclient::conn::{ConnectOptions, Connection, TransportKind, Wait};
use vlibsocket::client::SocketClient;
use vppinfra::testing;

/// Encodes `msg` for `conn`: its ID, the connection's current client index, `context`.
fn encode<M: Message>(conn: &Connection, msg: &M, context: u32) -> Vec<u8> {
    let mut bytes = wire::to_vec(msg, conn.table().id_of::<M>().unwrap()).unwrap();
    if let Some(off) = M::CONTEXT_OFFSET {
        bytes[off..off + 4].copy_from_slice(&context.to_be_bytes());
    }
    if msg.client_index().is_some() {
        bytes[2..6].copy_from_slice(&conn.client_index().to_be_bytes());
    }
    bytes
}

fn cli(c: &mut SocketClient, cmd: &str) -> String {
    let r: vpe::CliInbandReply = c
        .request(&vpe::CliInband {
            cmd: cmd.into(),
            ..Default::default()
        })
        .unwrap();
    r.reply
}

#[test]
fn mp_a_pivot_amid_events_loses_none() {
    let server = ServerProc::start("mp_shm_pivot_events", &["--log-level", "warn"]);
    let conn = Connection::connect(&server.path, &ConnectOptions::new("pivoter")).unwrap();
    let socket_index = conn.client_index();
    let event_id = conn.table().id_of::<ex::SwThingEvent>().unwrap();
    let reply_id = conn.table().id_of::<ex::WantSwThingEventsReply>().unwrap();
    let want = ex::WantSwThingEvents {
        enable: true,
        pid: std::process::id(),
        ..Default::default()
    };
    conn.send(&encode(&conn, &want, 1)).unwrap();
    let got = conn
        .lock_rx()
        .recv_with(Wait::For(Duration::from_secs(5)), wire::msg_id)
        .unwrap();
    assert_eq!(got, Some(Some(reply_id)));

    // Another client adds and deletes things while this one pivots: every change is an event
    // for the socket registration, before, during and after the pivot.
    let changes = 400;
    let path = server.path.clone();
    let generator = std::thread::spawn(move || {
        let mut g = SocketClient::connect(&path, "generator").unwrap();
        for i in 0..changes / 2 {
            let name = format!("t{i}");
            for is_add in [true, false] {
                let _: ex::SwThingAddDelReply = g
                    .request(&ex::SwThingAddDel {
                        is_add,
                        name: name.clone(),
                        count: 1,
                        ..Default::default()
                    })
                    .unwrap();
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    conn.pivot_to_shm(0).unwrap();
    assert_eq!(conn.transport(), TransportKind::SharedMemory);
    assert_ne!(conn.client_index(), socket_index);
    generator.join().unwrap();
    let mut events = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rx = conn.lock_rx();
    while events < changes && Instant::now() < deadline {
        if let Some(id) = rx
            .recv_with(Wait::For(Duration::from_millis(500)), wire::msg_id)
            .unwrap()
        {
            assert_eq!(id, Some(event_id));
            events += 1;
        }
    }
    drop(rx);
    assert_eq!(events, changes, "events lost around the pivot");

    // Requests now go through the segment, with the new index.
    let ping = memclnt::ControlPing::default();
    conn.send(&encode(&conn, &ping, 9)).unwrap();
    let reply = conn
        .lock_rx()
        .recv_with(Wait::For(Duration::from_secs(5)), |m| {
            memclnt::ControlPingReply::decode(m).unwrap()
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        (reply.context, reply.client_index),
        (9, conn.client_index())
    );
    let mut observer = SocketClient::connect(&server.path, "observer").unwrap();
    let listed = cli(&mut observer, "show api clients");
    assert!(listed.contains("socket+shm"), "{listed}");

    // Goodbye: memclnt_delete, then sockclnt_delete for the socket registration.
    assert!(conn.close(Duration::from_secs(5)));
    let gone = testing::wait_until(Duration::from_secs(5), || {
        !cli(&mut observer, "show api clients").contains("pivoter")
    });
    assert!(gone, "{}", cli(&mut observer, "show api clients"));
}
