//! Every field type through the generated codec: scalars, arrays, strings, nested types,
//! enums and enumflags (unknown values survive), unions, aliases, legacy arrays, host order,
//! keyword field names, count fields; and our CRC rule.

use vlibapi::msgs::{memfd, testapi, vlib_api};
use vlibapi::schema::crc32;
use vlibapi::wire::{self, DecodeErrorKind, EncodeError, Message};

fn round_trip<M: Message>(m: &M) -> Vec<u8> {
    let bytes = wire::to_vec(m, 9).unwrap();
    assert_eq!(bytes.len(), m.encoded_len());
    assert_eq!(&M::decode(&bytes).unwrap(), m, "{}", M::NAME);
    bytes
}

fn full() -> testapi::AllTypes {
    let point = |x, y| testapi::Point { x, y };
    testapi::AllTypes {
        client_index: 1,
        context: 2,
        a_u8: 0xfe,
        a_i8: -2,
        a_u16: 0xfedc,
        a_i16: -3,
        a_u32: 0xfedc_ba98,
        a_i32: -4,
        a_u64: u64::MAX - 1,
        a_i64: i64::MIN,
        a_f64: -1.5,
        a_bool: true,
        bytes: [1, 2, 3, 4, 5, 6],
        shorts: [7, 8, 9],
        fixed_str: "fifteen chars!!".into(),
        ip4: [192, 0, 2, 1],
        idx: 77,
        pair: [5, 6],
        color: testapi::Color::BLUE,
        big: testapi::BigEnum::BIG_B,
        signed: testapi::SignedEnum::MINUS_ONE,
        perm: testapi::Perm::PERM_READ | testapi::Perm::PERM_EXEC,
        addr: testapi::Addr::from_ip4(&[10, 0, 0, 1]).unwrap(),
        block: testapi::FixedBlock {
            a: 1,
            b: 2.5,
            c: true,
            addr: testapi::Addr::from_word(&0x0102_0304).unwrap(),
            perm: testapi::Perm::PERM_WRITE,
            name: "seven..".into(),
            corners: [point(1, 2), point(-3, -4)],
            r#where: point(5, 6),
        },
        pts_fixed: [point(0, 1), point(2, 3)],
        ip4s: [[1, 1, 1, 1], [8, 8, 8, 8]],
        n_items: 2,
        items: vec![
            testapi::Tagged {
                n_points: 1,
                points: vec![point(9, 9)],
                label: "first".into(),
                color: testapi::Color::RED,
            },
            testapi::Tagged {
                n_points: 0,
                points: vec![],
                label: String::new(),
                color: testapi::Color(200),
            },
        ],
        n_words: 3,
        words: vec![1, 2, 0xffff_ffff],
        n_blob: 4,
        blob: vec![0, 255, 0, 255],
        text: "variable ✓".into(),
    }
}

#[test]
fn every_field_type_round_trips() {
    let m = full();
    let bytes = round_trip(&m);
    // Spot-check the layout: the scalars follow id, client_index and context in order.
    assert_eq!(&bytes[10..12], &[0xfe, 0xfe]);
    assert_eq!(&bytes[12..14], &0xfedcu16.to_be_bytes());
    assert_eq!(&bytes[40..48], &(-1.5f64).to_be_bytes());
    assert_eq!(bytes[48], 1);
    assert_eq!(&bytes[bytes.len() - 12..], "variable ✓".as_bytes());
    round_trip(&testapi::AllTypes::default());
}

#[test]
fn count_fields_follow_the_arrays() {
    let mut m = full();
    m.n_items = 0;
    m.n_words = 100;
    let decoded = testapi::AllTypes::decode(&round_trip_bytes(&m)).unwrap();
    assert_eq!(
        (decoded.n_items, decoded.n_words, decoded.n_blob),
        (2, 3, 4)
    );

    let shared = testapi::SharedCount {
        context: 1,
        n: 0,
        a: vec![1, 2],
        b: vec![3, 4],
    };
    let d = testapi::SharedCount::decode(&round_trip_bytes(&shared)).unwrap();
    assert_eq!(d.n, 2);
    let bad = testapi::SharedCount {
        b: vec![3],
        ..shared
    };
    assert_eq!(
        wire::to_vec(&bad, 1),
        Err(EncodeError::CountMismatch { field: "n".into() })
    );
    let too_many = testapi::SharedCount {
        a: vec![0; 256],
        b: vec![0; 256],
        ..Default::default()
    };
    assert!(matches!(
        wire::to_vec(&too_many, 1),
        Err(EncodeError::TooMany { len: 256, .. })
    ));
}

fn round_trip_bytes<M: Message>(m: &M) -> Vec<u8> {
    wire::to_vec(m, 9).unwrap()
}

#[test]
fn enums_keep_unknown_values_and_flags_compose() {
    let c = testapi::Color(200);
    assert_eq!(c.name(), None);
    assert_eq!(format!("{c:?}"), "Color(200)");
    assert_eq!(format!("{:?}", testapi::Color::GREEN), "GREEN");
    assert_eq!(testapi::Color::GREEN.name(), Some("GREEN"));
    let p = testapi::Perm::PERM_READ | testapi::Perm::PERM_WRITE;
    assert!(p.contains(testapi::Perm::PERM_WRITE));
    assert!(!p.contains(testapi::Perm::PERM_EXEC));
    assert_eq!(format!("{p:?}"), "Perm(PERM_READ | PERM_WRITE)");
    assert_eq!(
        format!("{:?}", testapi::Perm(0x21)),
        "Perm(PERM_READ | 0x20)"
    );
    assert_eq!(format!("{:?}", testapi::Perm(0)), "Perm(0x0)");
    assert!(testapi::Perm::default().is_empty());
    assert_eq!(testapi::SignedEnum::MINUS_ONE.0, -1);
    assert_eq!(testapi::BigEnum::BIG_B.0, u32::MAX);
    // An enum field on the wire is its underlying integer.
    let m = vlib_api::ApiClientDetails {
        transport: vlib_api::ApiClientTransport(7),
        ..Default::default()
    };
    let bytes = round_trip(&m);
    assert_eq!(bytes[2 + 4 + 4 + 64], 7);
}

#[test]
fn unions_are_bytes_with_typed_members() {
    let a = testapi::Addr::from_ip4(&[10, 0, 0, 1]).unwrap();
    assert_eq!(testapi::Addr::SIZE, 16);
    assert_eq!(&a.0[..5], &[10, 0, 0, 1, 0]);
    assert_eq!(a.ip4().unwrap(), [10, 0, 0, 1]);
    assert_eq!(a.word().unwrap(), 0x0a00_0001);
    let mut b = a;
    b.set_ip6(&[0xff; 16]).unwrap();
    assert_eq!(b.ip4().unwrap(), [0xff; 4]);
    b.set_word(&1).unwrap();
    assert_eq!(b.0, {
        let mut x = [0u8; 16];
        x[3] = 1;
        x
    });
    assert_eq!(
        format!("{:?}", testapi::Addr::default()),
        format!("Addr({})", "00".repeat(16))
    );
}

#[test]
fn legacy_arrays_run_to_the_end() {
    let m = testapi::LegacyRest {
        context: 1,
        rest: vec![1, 2, 3],
    };
    let bytes = round_trip(&m);
    assert_eq!(bytes.len(), 2 + 4 + 12);
    // A shorter message with whole elements is valid; a partial element is not.
    assert_eq!(
        testapi::LegacyRest::decode(&bytes[..14]).unwrap().rest,
        [1, 2]
    );
    assert_eq!(
        testapi::LegacyRest::decode(&bytes[..15])
            .unwrap_err()
            .kind(),
        DecodeErrorKind::BadLength
    );
    let b = testapi::LegacyBytes {
        context: 1,
        data: vec![9; 5],
    };
    assert_eq!(round_trip(&b).len(), 11);
}

#[test]
fn host_order_fields_and_keyword_names() {
    let m = testapi::HostMsg {
        context: 1,
        h32: 0x0102_0304,
        h64: 0x0102_0304_0506_0708,
        h16: 0x0102,
        hs: [1, 2],
        n_hv: 1,
        hv: vec![3],
    };
    let bytes = round_trip(&m);
    assert_eq!(&bytes[2..6], &1u32.to_be_bytes());
    assert_eq!(&bytes[6..10], &0x0102_0304u32.to_ne_bytes());
    assert_eq!(&bytes[10..18], &0x0102_0304_0506_0708u64.to_ne_bytes());
    assert_eq!(&bytes[18..20], &0x0102u16.to_ne_bytes());
    assert_eq!(&bytes[20..28], &1u64.to_ne_bytes());
    assert_eq!(
        &bytes[36..38],
        &1u16.to_be_bytes(),
        "the count stays network order"
    );
    assert_eq!(&bytes[38..46], &3u64.to_ne_bytes());
    let k = testapi::KeywordFields {
        context: 1,
        r#type: 2,
        r#match: 3,
    };
    assert_eq!(round_trip(&k), [0, 9, 0, 0, 0, 1, 2, 0, 0, 0, 3]);
}

#[test]
fn our_crcs_are_crc32_of_the_canonical_signature() {
    assert_eq!(
        memfd::MemfdSegmentCreate::CRC,
        crc32(b"memfd_segment_create(u32 client_index;u32 context;u64@host requested_size)")
    );
    assert_eq!(
        memfd::MemfdSegmentCreateReply::CRC,
        crc32(b"memfd_segment_create_reply(u32 context;i32 retval;u32 master_fd)")
    );
    assert_eq!(
        vlib_api::ApiClientDetails::CRC,
        crc32(
            b"api_client_details(u32 context;u32 index;string name[64];\
              enum api_client_transport:u8(API_CLIENT_TRANSPORT_SHM=0;\
              API_CLIENT_TRANSPORT_SOCKET=1;API_CLIENT_TRANSPORT_SOCKET_SHM=2) transport;\
              u32 pid;u32 uid)"
        )
    );
    assert_eq!(
        memfd::MemfdSegmentCreate::NAME_CRC,
        format!(
            "memfd_segment_create_{:08x}",
            memfd::MemfdSegmentCreate::CRC
        )
    );
}
