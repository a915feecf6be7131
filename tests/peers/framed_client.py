"""Independent peer: a length-prefixed client written against Python's own
struct framing (not netservd's code). Pipelines COUNT frames of random sizes
on CONNS connections, then checks every echo is byte-identical and in order.

usage: framed_client.py HOST PORT WIDTH ORDER(big|little) COUNT CONNS MAX
"""
import random
import socket
import struct
import sys
import threading

host, port, width, order, count, conns, max_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
code = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
fmt = ("!" if order == "big" else "<") + code
errors = []


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def one(seed):
    rnd = random.Random(seed)
    payloads = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, max_len))) for _ in range(count)]
    s = socket.create_connection((host, port), timeout=10)
    wire = b"".join(struct.pack(fmt, len(p)) + p for p in payloads)
    sender = threading.Thread(target=s.sendall, args=(wire,))
    sender.start()
    try:
        for i, p in enumerate(payloads):
            (n,) = struct.unpack(fmt, recv_exact(s, width))
            got = recv_exact(s, n)
            if got != p:
                errors.append("conn %d frame %d differs (len %d vs %d)" % (seed, i, n, len(p)))
                return
    except Exception as e:  # noqa: BLE001 - report any failure
        errors.append("conn %d: %r" % (seed, e))
    finally:
        sender.join()
        s.close()


threads = [threading.Thread(target=one, args=(c,)) for c in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("ok %d frames x %d connections" % (count, conns))
