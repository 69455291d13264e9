#!/usr/bin/env python3
"""A TLS-terminating TCP proxy for the Kafka TLS tests.

The test broker (tansu) speaks plaintext only; this puts real TLS in front of it, so that
Floe's clients are tested with `security.protocol=SSL` end to end:

    tls-proxy.py CERT KEY LISTEN_PORT TARGET_PORT

listens on 127.0.0.1:LISTEN_PORT (never another interface), completes a TLS handshake with
CERT/KEY, and forwards the decrypted stream to 127.0.0.1:TARGET_PORT. Prints "ready" once it
listens. Stops when its standard input closes (the test process went away) or on SIGTERM.
"""

import socket
import ssl
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, ctx, target_port):
    try:
        tls = ctx.wrap_socket(client, server_side=True)
    except (ssl.SSLError, OSError):
        client.close()  # a client that does not trust us, or speaks plaintext
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        tls.close()
        return
    threading.Thread(target=pump, args=(tls, upstream), daemon=True).start()
    pump(upstream, tls)


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: tls-proxy.py CERT KEY LISTEN_PORT TARGET_PORT")
    cert, key, listen_port, target_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)

    def accept():
        while True:
            client, _ = server.accept()
            threading.Thread(target=serve, args=(client, ctx, target_port), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)


if __name__ == "__main__":
    main()
