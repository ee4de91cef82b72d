//! The typed messages generated at build time from `vlibapi/api/*.api.json`.
//!
//! - [`memclnt`]: VPP's memclnt set (IDs 1-28), names, layouts and CRCs as VPP @master has them.
//! - [`memfd`]: `memfd_segment_create` and its reply, from the originating change (IDs 29, 30).
//! - [`vpe`]: `show_version` and `cli_inband` with VPP's layouts and CRCs.
//! - [`vlib_api`]: ours: `api_client_dump` / `api_client_details`.
//!
//! Each module also has `schema()` (its [`crate::schema::Module`]), `MODULE_NAME`, `VERSION` and
//! `MESSAGES`.

macro_rules! generated {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[allow(clippy::all, clippy::pedantic)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        }
    };
}

generated!(
    /// VPP's memclnt messages: registration, keepalive, control_ping, get_api_json.
    memclnt
);
generated!(
    /// `memfd_segment_create` / `_reply` (our CRCs; `requested_size` in host order).
    memfd
);
generated!(
    /// `show_version` and `cli_inband`, byte-compatible with VPP's vpe.api.
    vpe
);
generated!(
    /// Our `api_client_dump` / `api_client_details`.
    vlib_api
);
generated!(
    /// Test-only definitions covering every field type, and the 64-field benchmark message.
    #[doc(hidden)]
    testapi
);
