// A DNS query over UDP through the layer. The example starts its own tiny resolver on 127.0.0.1 (the policy
// file opens loopback for it); every datagram's destination is vetted like a TCP connect.
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { SocketLayer } from 'sockguard';

/** A resolver that answers every A question with 192.0.2.10. */
function startResolver() {
  const server = dgram.createSocket('udp4');
  server.on('message', (query, rinfo) => {
    const questionEnd = query.indexOf(0, 12) + 5; // the name's terminating zero, then QTYPE and QCLASS
    const header = Buffer.from(query.subarray(0, 12));
    header.writeUInt16BE(0x8180, 2); // a response, recursion available, no error
    header.writeUInt16BE(1, 6); // one answer
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 10]);
    server.send(Buffer.concat([header, query.subarray(12, questionEnd), answer]), rinfo.port, rinfo.address);
  });
  return new Promise((resolve) => server.bind(0, '127.0.0.1', () => resolve(server)));
}

function query(name, id) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // recursion desired
  header.writeUInt16BE(1, 4); // one question
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]); // QTYPE A, QCLASS IN
}

const resolver = await startResolver();
const layer = new SocketLayer({ appId: 'examples', policy: fileURLToPath(new URL('./policy.json', import.meta.url)) });
const socket = layer.createSocket('udp4');

socket.on('message', async (msg, rinfo) => {
  const answers = msg.readUInt16BE(6);
  const address = [...msg.subarray(msg.length - 4)].join('.');
  console.log(`example.com A ${address} (${answers} answer from ${rinfo.address}:${rinfo.port})`);
  socket.close();
  resolver.close();
  await layer.close();
});
socket.send(query('example.com', 0x1234), resolver.address().port, '127.0.0.1');

// A resolver on a private address is refused before anything is sent.
socket.send(query('example.com', 1), 53, '10.0.0.53', (err) => console.log('denied:', err?.code, err?.rule));
