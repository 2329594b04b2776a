//! The tracker at every byte split, and the property that any split of a frame stream gives the
//! same forwarded bytes and the same events.

use super::*;
use proptest::prelude::*;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::CloseCode as Code;

const OURS: [u8; 8] = *b"wsgate!!";

fn bytes(mut f: Frame, mask: Option<[u8; 4]>) -> Vec<u8> {
    f.header_mut().mask = mask;
    let mut out = Vec::new();
    f.format(&mut out).expect("formatting into a Vec");
    out
}

fn text(s: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    bytes(
        Frame::message(s.as_bytes().to_vec(), OpCode::Data(Data::Text), true),
        mask,
    )
}

fn close(code: u16, mask: Option<[u8; 4]>) -> Vec<u8> {
    let frame = Frame::close(Some(tungstenite::protocol::CloseFrame {
        code: Code::from(code),
        reason: "bye".into(),
    }));
    bytes(frame, mask)
}

/// What a pump would see: forwarded bytes, and every other action as an event.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    forwarded: Vec<u8>,
    events: Vec<Action>,
    messages: u64,
}

/// Feeds `stream` cut at `cuts`, carrying incomplete headers over like the pump does.
fn run(t: &mut Tracker, stream: &[u8], cuts: &[usize]) -> Seen {
    let mut seen = Seen::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut last = 0;
    let mut points: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    points.sort_unstable();
    points.push(stream.len());
    for p in points {
        if p < last {
            continue;
        }
        buf.extend_from_slice(&stream[last..p]);
        last = p;
        let fed = t.feed(&buf, &mut out);
        seen.messages += fed.messages;
        for a in out.drain(..) {
            match a {
                Action::Forward(r) => seen.forwarded.extend_from_slice(&buf[r]),
                Action::Release(b) => seen.forwarded.extend_from_slice(&b),
                other => seen.events.push(other),
            }
        }
        let keep = buf.len() - fed.carry;
        buf.drain(..keep);
    }
    seen
}

fn every_split(stream: &[u8], limit: u64) -> Seen {
    let whole = run(&mut Tracker::new(limit, OURS), stream, &[]);
    for a in 0..stream.len() {
        for b in a..stream.len() {
            let split = run(&mut Tracker::new(limit, OURS), stream, &[a, b]);
            assert_eq!(split, whole, "cut at {a} and {b}");
        }
    }
    whole
}

#[test]
fn data_passes_unchanged_and_counts_messages() {
    let mut stream = text("hello", Some([1, 2, 3, 4]));
    stream.extend(text("world", None));
    let seen = every_split(&stream, 0);
    assert_eq!(seen.forwarded, stream);
    assert_eq!(seen.messages, 2);
    assert!(seen.events.is_empty());
}

#[test]
fn our_pong_is_swallowed_and_others_are_released() {
    let ours = bytes(Frame::pong(OURS.to_vec()), Some([9, 8, 7, 6]));
    let theirs = bytes(Frame::pong(b"app".to_vec()), None);
    let mut stream = text("a", None);
    stream.extend(&ours);
    stream.extend(&theirs);
    stream.extend(text("b", None));
    let seen = every_split(&stream, 0);
    let mut expected = text("a", None);
    expected.extend(&theirs);
    expected.extend(text("b", None));
    assert_eq!(seen.forwarded, expected);
}

#[test]
fn close_codes_are_read_at_any_split_and_unmasked() {
    for mask in [None, Some([0xAA, 0x55, 0x0F, 0xF0])] {
        let seen = every_split(&close(4001, mask), 0);
        assert_eq!(seen.events, [Action::Close, Action::CloseCode(4001)]);
    }
    let empty = bytes(Frame::close(None), None);
    assert_eq!(
        every_split(&empty, 0).events,
        [Action::Close, Action::CloseCode(1005)]
    );
}

#[test]
fn a_message_over_the_limit_stops_forwarding_before_its_frame() {
    let mut stream = text("0123", None);
    stream.extend(bytes(
        Frame::message(b"0123".to_vec(), OpCode::Data(Data::Text), false),
        None,
    ));
    // The first fragment is within the limit and passes; the one that crosses it does not.
    let first = stream.clone();
    stream.extend(bytes(
        Frame::message(b"4567".to_vec(), OpCode::Data(Data::Continue), true),
        None,
    ));
    stream.extend(close(1000, None));
    let seen = every_split(&stream, 6);
    assert_eq!(
        seen.forwarded, first,
        "nothing from the crossing frame on passes"
    );
    assert_eq!(
        seen.events,
        [Action::TooBig, Action::Close, Action::CloseCode(1000)]
    );
    assert_eq!(seen.messages, 1);
}

#[test]
fn garbage_turns_opaque_but_the_limit_still_counts() {
    // Reserved opcode 0x3: framing is lost, bytes pass as they are.
    let mut stream = text("ok", None);
    stream.extend([0x83, 0x7E, 0x00, 0x10]);
    stream.extend([0u8; 16]);
    let seen = every_split(&stream, 0);
    assert_eq!(seen.forwarded, stream);
    assert_eq!(seen.events, [Action::Opaque]);
    let limited = run(&mut Tracker::new(8, OURS), &stream, &[]);
    assert_eq!(limited.events, [Action::Opaque, Action::TooBig]);
    assert_eq!(limited.forwarded, text("ok", None));
}

#[test]
fn oversized_or_fragmented_control_frames_turn_opaque() {
    let big_ping = bytes(Frame::ping(vec![0u8; 126]), None);
    let seen = run(&mut Tracker::new(0, OURS), &big_ping, &[]);
    assert_eq!(seen.events, [Action::Opaque]);
    assert_eq!(seen.forwarded, big_ping);
    let mut fragmented = Frame::ping(b"x".to_vec());
    fragmented.header_mut().is_final = false;
    let seen = run(&mut Tracker::new(0, OURS), &bytes(fragmented, None), &[]);
    assert_eq!(seen.events, [Action::Opaque]);
    let limited = run(&mut Tracker::new(64, OURS), &big_ping, &[]);
    assert_eq!(limited.events, [Action::Opaque, Action::TooBig]);
}

#[test]
fn boundaries_only_between_frames() {
    let mut t = Tracker::new(0, OURS);
    let frame = text("hello", None);
    let mut out = Vec::new();
    assert!(t.at_boundary());
    let fed = t.feed(&frame[..3], &mut out);
    assert!(!t.at_boundary(), "inside the payload");
    assert_eq!(fed.carry, 0);
    t.feed(&frame[3..], &mut out);
    assert!(t.at_boundary());
    let fed = t.feed(&frame[..1], &mut out);
    assert_eq!(fed.carry, 1, "an incomplete header is carried");
    assert!(out.is_empty());
    assert!(t.at_boundary(), "carried bytes were not forwarded");
    let pong = bytes(Frame::pong(b"p".to_vec()), None);
    t.feed(&pong[..2], &mut out);
    assert!(!t.at_boundary(), "a pong is held");
}

#[test]
fn discarding_forwards_nothing_but_still_sees_the_close() {
    let mut t = Tracker::new(0, OURS);
    t.discard();
    let mut stream = text("late", None);
    stream.extend(close(1000, None));
    let seen = run(&mut t, &stream, &[3]);
    assert!(seen.forwarded.is_empty());
    assert_eq!(seen.events, [Action::Close, Action::CloseCode(1000)]);
}

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    let mask = proptest::option::of(any::<[u8; 4]>());
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            mask.clone(),
            any::<bool>()
        )
            .prop_map(|(p, m, bin)| {
                let op = if bin { Data::Binary } else { Data::Text };
                bytes(Frame::message(p, OpCode::Data(op), true), m)
            }),
        (proptest::collection::vec(any::<u8>(), 0..125), mask.clone())
            .prop_map(|(p, m)| bytes(Frame::ping(p), m)),
        (proptest::collection::vec(any::<u8>(), 0..125), mask.clone())
            .prop_map(|(p, m)| bytes(Frame::pong(p), m)),
        mask.clone()
            .prop_map(|m| bytes(Frame::pong(OURS.to_vec()), m)),
        (1000u16..5000, mask).prop_map(|(c, m)| close(c, m)),
        Just(bytes(
            Frame::message(vec![7u8; 70_000], OpCode::Data(Data::Binary), true),
            None
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any split of a valid frame stream gives the same forwarded bytes, events and counts.
    #[test]
    fn any_split_gives_the_same_result(
        frames in proptest::collection::vec(frame_strategy(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        limit in prop_oneof![Just(0u64), 1u64..100_000],
    ) {
        let stream: Vec<u8> = frames.concat();
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len())).collect();
        let whole = run(&mut Tracker::new(limit, OURS), &stream, &[]);
        let split = run(&mut Tracker::new(limit, OURS), &stream, &cuts);
        prop_assert_eq!(&split, &whole);
        if limit == 0 {
            // Nothing is lost or changed but our own pongs.
            let ours = frames.iter().filter(|f| {
                let mut t = Tracker::new(0, OURS);
                run(&mut t, f, &[]).forwarded.is_empty()
            });
            let dropped: usize = ours.map(Vec::len).sum();
            prop_assert_eq!(whole.forwarded.len() + dropped, stream.len());
        }
    }
}
