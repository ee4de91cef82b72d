//! Other event sources: a plugin hands the server an fd (a timerfd, an eventfd, a netlink
//! socket...) and a callback; the loop watches the fd with the clients' and calls the callback,
//! level-triggered, whenever it is readable. The callback drains its fd and may send messages
//! (events) to any client, whatever its transport.

use std::cell::Ref;
use std::fmt;
use std::os::fd::OwnedFd;

use vlibapi::dispatch::{Outbox, ReplyError};
use vlibapi::wire::Message;
use vlibapi::{ClientIndex, Dispatcher};

use crate::server::{Directory, DirectoryHandle, Routes};

/// What an event source's callback can do.
pub struct SourceCtx<'a, 'b, 'c> {
    pub(crate) dispatcher: &'a mut Dispatcher,
    pub(crate) routes: &'a mut Routes<'b, 'c>,
    pub(crate) directory: &'a DirectoryHandle,
}

impl fmt::Debug for SourceCtx<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceCtx").finish_non_exhaustive()
    }
}

impl SourceCtx<'_, '_, '_> {
    /// Sends `msg` to client `to` (an event: it goes out as it is).
    pub fn send<M: Message>(&mut self, to: ClientIndex, msg: &M) -> Result<(), ReplyError> {
        self.dispatcher.send(to, msg, self.routes)
    }

    /// Sends `msg` to every registered client; returns how many took it.
    pub fn broadcast<M: Message>(&mut self, msg: &M) -> usize {
        let mut clients = Vec::new();
        self.routes.for_each_client(&mut |c| clients.push(c));
        clients
            .into_iter()
            .filter(|&c| self.dispatcher.send(c, msg, self.routes).is_ok())
            .count()
    }

    /// The registered clients.
    pub fn directory(&self) -> Ref<'_, Directory> {
        self.directory.borrow()
    }
}

/// A callback run when its fd is readable.
pub type SourceFn = Box<dyn FnMut(&OwnedFd, &mut SourceCtx<'_, '_, '_>)>;

/// A registered event source.
pub(crate) struct EventSource {
    pub(crate) fd: OwnedFd,
    pub(crate) name: String,
    pub(crate) on_ready: SourceFn,
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
