// A broadcast relay on uWebSockets, the second fan-out baseline for gavel-load --broadcast (next to broadcast.js):
// every text message from one connection goes to every other connection, through uWebSockets' own pub/sub, the
// way its authors build broadcast. Every connection subscribes to one topic; the message handler publishes what it
// reads with ws->publish, which leaves the sender out (as broadcast.js does). publish does not write: the topic
// tree queues the message for each subscriber and the loop's pre- and post-handlers (App.h) drain the queue once
// per event-loop iteration, corking each subscriber and writing all of its queued messages with one send. So the
// messages read in one iteration go out together, one write per watcher.
//
// No compression; a large backpressure limit (64 MiB, as compare.py gives gavel serve --max-outbound-bytes) so a
// slow watcher is buffered rather than dropped, as Node's ws buffers it; idle timeout and automatic pings off,
// since the driver's watchers only read.
//
// Not committed here: uWebSockets and uSockets (github.com/uNetworking). compare.py exports them into /tmp, builds
// uSockets with its Makefile (no TLS) and this file against it, and caches the binary there; by hand:
//
//     make -C uSockets CFLAGS=-march=native                # in a uWebSockets tree with uSockets inside it
//     g++ -std=c++2b -O3 -march=native -flto -DUWS_NO_ZLIB -Isrc -IuSockets/src \
//         path/to/loadtest/compare/uws_relay.cpp uSockets/uSockets.a -o /tmp/uws_relay
//     /tmp/uws_relay 8091
//     loadtest/.build/release/gavel-load --url ws://127.0.0.1:8091/ws --broadcast --preset hot --rate 30

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <string_view>

int main(int argc, char **argv) {
    int port = argc > 1 ? std::atoi(argv[1]) : 8091;
    if (port < 1 || port > 65535) {
        std::fprintf(stderr, "usage: uws_relay PORT (1...65535)\n");
        return 2;
    }
    struct PerSocketData {};
    constexpr std::string_view topic = "relay";

    uWS::App()
        .ws<PerSocketData>("/*", {
            .compression = uWS::DISABLED,
            .maxPayloadLength = 64 * 1024,
            .idleTimeout = 0,
            .maxBackpressure = 64 * 1024 * 1024,
            .closeOnBackpressureLimit = false,
            .resetIdleTimeoutOnSend = false,
            .sendPingsAutomatically = false,
            .open = [topic](auto *ws) { ws->subscribe(topic); },
            .message = [topic](auto *ws, std::string_view message, uWS::OpCode opCode) {
                if (opCode == uWS::OpCode::TEXT) ws->publish(topic, message, opCode);
            },
        })
        .listen("127.0.0.1", port, [port](auto *listenSocket) {
            if (listenSocket) {
                std::fprintf(stderr, "uWebSockets relay on ws://127.0.0.1:%d/\n", port);
            } else {
                std::fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", port);
                std::exit(1);
            }
        })
        .run();
}
