/* SPDX-License-Identifier: Apache-2.0
 * The capture floor: a bare libpcap loop that reads every packet and does nothing with it, set
 * up as capture-pcap sets up a live device (buffer, snapshot length, 100 ms timeout, nanosecond
 * timestamps, BPF filter). bench/live_cost.py runs it beside mysqlprobe and tcpdump.
 * Usage: pcap_loop DEVICE FILTER BUFFER_MB SNAPLEN   (stops on SIGTERM/SIGINT; prints counts) */
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static pcap_t* handle;
static unsigned long long packets, bytes;

static void stop(int sig) {
    (void)sig;
    pcap_breakloop(handle);
}

static void count(u_char* user, const struct pcap_pkthdr* h, const u_char* data) {
    (void)user;
    (void)data;
    ++packets;
    bytes += h->caplen;
}

int main(int argc, char** argv) {
    char err[PCAP_ERRBUF_SIZE];
    struct bpf_program prog;
    if (argc != 5) {
        fprintf(stderr, "usage: pcap_loop DEVICE FILTER BUFFER_MB SNAPLEN\n");
        return 2;
    }
    handle = pcap_create(argv[1], err);
    if (handle == NULL) {
        fprintf(stderr, "pcap_create: %s\n", err);
        return 1;
    }
    pcap_set_snaplen(handle, atoi(argv[4]));
    pcap_set_buffer_size(handle, atoi(argv[3]) * 1024 * 1024);
    pcap_set_timeout(handle, 100);
    pcap_set_tstamp_precision(handle, PCAP_TSTAMP_PRECISION_NANO);
    if (pcap_activate(handle) < 0 || pcap_compile(handle, &prog, argv[2], 1, 0) < 0 ||
        pcap_setfilter(handle, &prog) < 0) {
        fprintf(stderr, "pcap: %s\n", pcap_geterr(handle));
        return 1;
    }
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    while (pcap_dispatch(handle, -1, count, NULL) >= 0) {
    }
    struct pcap_stat st;
    pcap_stats(handle, &st);
    printf("%llu packets %llu bytes %u dropped\n", packets, bytes, st.ps_drop);
    return 0;
}
