// The Socket.IO peer of Rill's edge, for side-by-side load tests: the same
// semantics on the same JSON shapes, without Kafka, a store or locks.
//
//   node server.js PORT REDIS_URL
//
// A client connects to /socket.io/ with `user_id` and `profile_id` in the
// query, joins the room of its profile and gets `ready`; a `send`
// ({body, ref}) is broadcast to the room as `message` {id, profile_id,
// sender_id, body, sent_at} through the Redis adapter (so that both
// processes deliver it) and acknowledged with `ack` {ref, id}.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const port = Number(process.argv[2] || 3001);
const redisUrl = process.argv[3] || 'redis://127.0.0.1:6379';

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer();
  const io = new Server(server, {
    transports: ['websocket'],
    adapter: createAdapter(pub, sub),
    // As Rill's edge: ping every 15 s, 10 s to answer.
    pingInterval: 15000,
    pingTimeout: 10000,
    maxHttpBufferSize: 65536,
    perMessageDeflate: false,
  });
  io.on('connection', (socket) => {
    const { user_id: userId, profile_id: profileId } = socket.handshake.query;
    if (typeof userId !== 'string' || typeof profileId !== 'string') {
      socket.disconnect(true);
      return;
    }
    socket.join(profileId);
    socket.emit('ready', { profile_id: profileId, user_id: userId });
    socket.on('send', (frame) => {
      if (!frame || typeof frame.body !== 'string' || frame.body.length > 4096) {
        socket.emit('send_error', { code: 'bad_send', ref: frame && frame.ref });
        return;
      }
      const id = crypto.randomUUID();
      io.to(profileId).emit('message', {
        id,
        profile_id: profileId,
        sender_id: userId,
        body: frame.body,
        sent_at: Date.now(),
      });
      socket.emit('ack', { ref: frame.ref, id });
    });
  });
  server.listen(port, '127.0.0.1', () => {
    console.log(`socket.io peer listening on 127.0.0.1:${port}`);
  });
  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
