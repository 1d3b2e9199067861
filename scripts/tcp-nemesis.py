#!/usr/bin/env python3
"""A TCP proxy that can partition what passes through it, for the soak.

    tcp-nemesis.py LISTEN_PORT TARGET_PORT MODE_FILE

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT. MODE_FILE holds
one word, read every 50 ms:
  pass       forward both ways (also when the file is missing);
  blackhole  keep every connection open but move no byte either way (a
             partition: the peers see silence, not an error);
  drop       reset every connection and refuse new ones (a partition that
             the peers see at once).
"""

import socket
import sys
import threading
import time

LISTEN, TARGET, MODE_FILE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
mode = "pass"
lock = threading.Lock()
open_pairs = set()


def watch_mode() -> None:
    global mode
    while True:
        try:
            with open(MODE_FILE) as f:
                new = f.read().strip() or "pass"
        except FileNotFoundError:
            new = "pass"
        if new != mode:
            mode = new
            if mode == "drop":
                with lock:
                    pairs = list(open_pairs)
                for a, b in pairs:
                    close(a, b, reset=True)
        time.sleep(0.05)


def close(a: socket.socket, b: socket.socket, reset: bool = False) -> None:
    with lock:
        open_pairs.discard((a, b))
    for s in (a, b):
        try:
            if reset:
                # SO_LINGER 0: a RST, as a dropped route would end it.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        except OSError:
            pass


def pump(src: socket.socket, dst: socket.socket, pair) -> None:
    src.settimeout(0.05)
    while True:
        if mode == "blackhole":
            time.sleep(0.05)
            continue
        try:
            data = src.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        while mode == "blackhole":
            time.sleep(0.05)
        try:
            dst.sendall(data)
        except OSError:
            break
    close(*pair)


def main() -> None:
    threading.Thread(target=watch_mode, daemon=True).start()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", LISTEN))
    server.listen(256)
    print(f"tcp-nemesis: 127.0.0.1:{LISTEN} -> 127.0.0.1:{TARGET}, mode in {MODE_FILE}",
          file=sys.stderr, flush=True)
    while True:
        client, _ = server.accept()
        if mode == "drop":
            close(client, client, reset=True)
            continue
        try:
            upstream = socket.create_connection(("127.0.0.1", TARGET), timeout=5)
        except OSError:
            client.close()
            continue
        pair = (client, upstream)
        with lock:
            open_pairs.add(pair)
        threading.Thread(target=pump, args=(client, upstream, pair), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, pair), daemon=True).start()


if __name__ == "__main__":
    main()
