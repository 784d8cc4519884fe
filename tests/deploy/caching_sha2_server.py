#!/usr/bin/python3
"""A MySQL server that only logs clients in, with caching_sha2_password,
the default of MySQL 8.4, as MySQL's server side does it over plain TCP:

  1. handshake names caching_sha2_password and a 20-byte nonce;
  2. the client answers with XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + nonce));
  3. if this user's password is in the server's cache (a successful full
     login since start), that is checked: "fast auth success" (0x03), OK;
  4. else "perform full authentication" (0x04): over plain TCP the client
     asks for the RSA public key (0x02), gets it, and sends
     RSA-OAEP(password + NUL, XOR nonce); the server decrypts and compares.

After the login every command gets an error that names this server, so a
client's error text tells a passed login from a refused one. The MySQL
server's protocol documentation ("caching_sha2_password information",
"Protocol::HandshakeV10", "Protocol::HandshakeResponse41") is the reference.

No MySQL server package exists for Debian bookworm and no registry is
reachable for the mysql:8.4 image, so tools/test-docker.sh points the
relay image's seqaudit (Connector/C++ 1.1 on libmariadb) at this instead.

Usage: caching_sha2_server.py PORT USER PASSWORD   (prints one line per login)
"""
import hashlib
import os
import socket
import struct
import sys
import threading

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PLUGIN = b"caching_sha2_password"
CLIENT_LONG_PASSWORD = 1
CLIENT_CONNECT_WITH_DB = 8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_STATEMENTS = 0x10000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_PLUGIN_AUTH_LENENC = 0x200000
CAPS = (CLIENT_LONG_PASSWORD | CLIENT_CONNECT_WITH_DB | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH
        | CLIENT_PLUGIN_AUTH_LENENC)


class Conn:
    def __init__(self, sock):
        self.sock, self.seq = sock, 0

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read(self):
        head = self.recv_exact(4)
        length = int.from_bytes(head[:3], "little")
        self.seq = (head[3] + 1) & 0xFF
        return self.recv_exact(length)

    def write(self, payload):
        self.sock.sendall(len(payload).to_bytes(3, "little") + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) & 0xFF

    def ok(self):
        self.write(b"\x00\x00\x00" + struct.pack("<HH", 2, 0))

    def error(self, code, state, text):
        self.write(b"\xff" + struct.pack("<H", code) + b"#" + state + text.encode())


def scramble_of(password, nonce):
    d1 = hashlib.sha256(password).digest()
    d2 = hashlib.sha256(d1).digest()
    d3 = hashlib.sha256(d2 + nonce).digest()
    return bytes(a ^ b for a, b in zip(d1, d3))


def lenenc(data, pos):
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[pos + 1:pos + 1 + size], "little"), pos + 1 + size


def serve(conn, user, password, key, cache, lock):
    nonce = bytes(b % 94 + 33 for b in os.urandom(20))  # printable, no NUL, as MySQL makes them
    conn.write(b"\x0a" + b"8.4.0-caching-sha2-test\x00" + struct.pack("<I", threading.get_ident() & 0xFFFF)
               + nonce[:8] + b"\x00" + struct.pack("<H", CAPS & 0xFFFF) + b"\xff" + struct.pack("<H", 2)
               + struct.pack("<H", CAPS >> 16) + bytes([21]) + b"\x00" * 10 + nonce[8:] + b"\x00"
               + PLUGIN + b"\x00")
    resp = conn.read()
    flags = struct.unpack("<I", resp[:4])[0]
    pos = 32
    end = resp.index(b"\x00", pos)
    login = resp[pos:end].decode()
    pos = end + 1
    if flags & CLIENT_PLUGIN_AUTH_LENENC:
        n, pos = lenenc(resp, pos)
    else:
        n, pos = resp[pos], pos + 1
    answer = resp[pos:pos + n]
    pos += n
    if flags & CLIENT_CONNECT_WITH_DB and pos < len(resp):
        pos = resp.index(b"\x00", pos) + 1
    plugin = resp[pos:resp.index(b"\x00", pos)] if flags & CLIENT_PLUGIN_AUTH and pos < len(resp) else b""
    if plugin != PLUGIN:
        # A client that answered with another plugin is switched to ours.
        conn.write(b"\xfe" + PLUGIN + b"\x00" + nonce + b"\x00")
        answer = conn.read()
    with lock:
        cached = (login, password) in cache
    if login == user and cached and answer == scramble_of(password.encode(), nonce):
        conn.write(b"\x01\x03")  # fast auth success
        conn.ok()
        return login, "fast"
    conn.write(b"\x01\x04")  # perform full authentication
    request = conn.read()
    if request != b"\x02":
        conn.error(1045, b"28000", f"Access denied for user '{login}' (expected a public key request)")
        return login, f"refused: client sent {request[:8]!r} instead of asking for the RSA key"
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    conn.write(b"\x01" + pem)
    sealed = conn.read()
    try:
        plain = key.decrypt(sealed, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),
                                                 label=None))
    except ValueError:
        conn.error(1045, b"28000", f"Access denied for user '{login}' (RSA)")
        return login, "refused: RSA decryption failed"
    given = bytes(c ^ nonce[i % len(nonce)] for i, c in enumerate(plain)).rstrip(b"\x00")
    if login != user or given != password.encode():
        conn.error(1045, b"28000", f"Access denied for user '{login}' (using password: YES)")
        return login, "refused: wrong password (full authentication)"
    with lock:
        cache.add((login, password))
    conn.ok()
    return login, "full (RSA key exchange)"


def handle(sock, user, password, key, cache, lock):
    conn = Conn(sock)
    try:
        login, outcome = serve(conn, user, password, key, cache, lock)
        print(f"login {login}: {outcome}", flush=True)
        while outcome in ("fast", "full (RSA key exchange)"):
            command = conn.read()
            conn.seq = 1
            if command[:1] == b"\x01":  # COM_QUIT
                break
            conn.error(1105, b"HY000", "caching_sha2 test server: logged in; it runs no SQL")
    except (EOFError, ConnectionError):
        pass
    finally:
        sock.close()


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cache, lock = set(), threading.Lock()
    server = socket.create_server(("127.0.0.1", port))
    print(f"listening on 127.0.0.1:{server.getsockname()[1]}", flush=True)
    while True:
        sock, _ = server.accept()
        threading.Thread(target=handle, args=(sock, user, password, key, cache, lock), daemon=True).start()


if __name__ == "__main__":
    main()
