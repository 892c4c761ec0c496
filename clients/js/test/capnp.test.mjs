// node --test: the server-frame decoder on hostile bytes (every one is a ProtocolError, never a
// crash or a read out of bounds), and frames split at every byte.
import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeServerFrame, splitFrames, ProtocolError, MAX_SERVER_FRAME } from '../src/capnp.js';

// An ack { count: 3, lastSeq: 42 } as the Rust encoder writes it: root -> ServerFrame (1 data
// word, 1 pointer; tag 0) -> Ack (2 data words).
const ack = Buffer.from(
  '00000000' + '05000000' + '0000000001000100' + '0000000000000000' + '0000000002000000'
  + '0300000000000000' + '2a00000000000000', 'hex');

test('an ack decodes', () => {
  assert.deepEqual(decodeServerFrame(ack), { type: 'ack', count: 3, lastSeq: 42 });
});

test('frames split at every byte come out whole', () => {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(ack.length);
  const two = Buffer.concat([prefix, ack, prefix, ack]);
  for (let cut = 0; cut <= two.length; cut++) {
    const first = splitFrames(two.subarray(0, cut));
    const rest = Buffer.concat([first.rest, two.subarray(cut)]);
    const second = splitFrames(rest);
    assert.equal(first.payloads.length + second.payloads.length, 2, `cut at ${cut}`);
    assert.equal(second.rest.length, 0);
  }
});

test('a length over the limit is refused at the prefix', () => {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(MAX_SERVER_FRAME + 1);
  assert.throws(() => splitFrames(prefix), ProtocolError);
});

test('hostile payloads are ProtocolErrors', () => {
  const cases = {
    empty: Buffer.alloc(0),
    twoSegments: Buffer.from('0100000001000000', 'hex'),
    segmentPastEnd: Buffer.from('00000000ffffff0f', 'hex'),
    nullRoot: Buffer.from('00000000010000000000000000000000', 'hex'),
    rootOutOfBounds: Buffer.from('00000000010000004000000001000100', 'hex'),
    listAsRoot: Buffer.from('00000000010000000100000001000000', 'hex'),
    negativeOffset: Buffer.from('0000000001000000fcffffff01000100', 'hex'),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    assert.throws(() => decodeServerFrame(bytes), ProtocolError, name);
  }
  // Every truncation and every single-byte change of a valid ack: a value or a ProtocolError.
  for (let len = 0; len < ack.length; len++) {
    try {
      decodeServerFrame(ack.subarray(0, len));
    } catch (e) {
      assert.ok(e instanceof ProtocolError, `truncated to ${len}: ${e}`);
    }
  }
  for (let at = 0; at < ack.length; at++) {
    for (const value of [0x00, 0x01, 0x7f, 0x80, 0xff]) {
      const bytes = Buffer.from(ack);
      bytes[at] = value;
      try {
        decodeServerFrame(bytes);
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `byte ${at} = ${value}: ${e}`);
      }
    }
  }
});
