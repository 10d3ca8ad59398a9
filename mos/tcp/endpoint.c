/* endpoint.c: the transition table shared by the monitor's passive
 * endpoint model and the end host (see endpoint.h), and its names.
 *
 * Row per (state, input): the new state and who the row is for.  A missing
 * cell means the input changes nothing in that state.  Sections of RFC
 * 9293 are cited per row group; rows marked MONITOR are the passive
 * model's inferences where an end host would do otherwise (it sees every
 * segment it gets, the monitor may have missed some).
 */
#include "endpoint.h"

#define T(st, in, to, w) [MOS_TCPS_##st][MOS_TCP_##in] = {MOS_TCPS_##to + 1, MOS_TCP_FOR_##w}
/* an acceptable RST closes every state (RFC 9293 3.10.7.4 first check;
 * LISTEN ignores RSTs at an end host, 3.10.7.2) */
#define RST_ROWS(st, w) T(st, RCV_RST, CLOSED, w), T(st, SENT_RST, CLOSED, MONITOR)

const mos_tcp_cell_t mos_tcp_table[MOS_TCPS_COUNT][MOS_TCP_NINPUTS] = {
    /* CLOSED (3.10.7.1): an end host answers segments with RST and opens
     * only on a user call (3.10.1); the monitor's client starts here and
     * the model follows what it sends */
    T(CLOSED, USER_ACTIVE_OPEN, SYN_SENT, HOST),
    T(CLOSED, USER_PASSIVE_OPEN, LISTEN, HOST),
    T(CLOSED, SENT_SYN, SYN_SENT, MONITOR),
    T(CLOSED, SENT_SYNACK, SYN_RCVD, MONITOR),
    T(CLOSED, SENT_FIN, FIN_WAIT_1, MONITOR),
    T(CLOSED, SENT_FIN_EARLY, FIN_WAIT_1, MONITOR),
    T(CLOSED, RCV_SYN, SYN_RCVD, MONITOR),
    T(CLOSED, RCV_FIN, CLOSE_WAIT, MONITOR),
    T(CLOSED, RCV_FIN_ACK_FIN, CLOSE_WAIT, MONITOR),

    /* LISTEN (3.10.7.2): a SYN makes SYN-RECEIVED */
    T(LISTEN, RCV_SYN, SYN_RCVD, BOTH),
    T(LISTEN, USER_CLOSE, CLOSED, HOST), /* 3.10.4 */
    T(LISTEN, SENT_SYNACK, SYN_RCVD, MONITOR),
    T(LISTEN, SENT_FIN, FIN_WAIT_1, MONITOR),
    T(LISTEN, SENT_FIN_EARLY, FIN_WAIT_1, MONITOR),
    T(LISTEN, RCV_FIN, CLOSE_WAIT, MONITOR),
    T(LISTEN, RCV_FIN_ACK_FIN, CLOSE_WAIT, MONITOR),
    RST_ROWS(LISTEN, MONITOR),

    /* SYN-SENT (3.10.7.3): a SYN-ACK of our SYN establishes; a SYN alone is
     * a simultaneous open (Figure 8); a RST counts only if it acknowledges
     * our SYN.  The monitor also takes a bare ACK of our SYN (it missed
     * the SYN-ACK) and a FIN (the handshake went unseen). */
    T(SYN_SENT, RCV_SYN, SYN_RCVD, BOTH),
    T(SYN_SENT, RCV_SYNACK, ESTABLISHED, BOTH),
    T(SYN_SENT, RCV_ACK_SYN, ESTABLISHED, MONITOR),
    T(SYN_SENT, RCV_FIN, CLOSE_WAIT, MONITOR),
    T(SYN_SENT, RCV_FIN_ACK_FIN, CLOSE_WAIT, MONITOR),
    T(SYN_SENT, USER_CLOSE, CLOSED, HOST), /* 3.10.4 */
    T(SYN_SENT, SENT_FIN, FIN_WAIT_1, MONITOR),
    T(SYN_SENT, SENT_FIN_EARLY, FIN_WAIT_1, MONITOR),
    RST_ROWS(SYN_SENT, BOTH),

    /* SYN-RECEIVED (3.10.7.4 fifth, ACK; eighth, FIN) */
    T(SYN_RCVD, RCV_ACK_SYN, ESTABLISHED, BOTH),
    T(SYN_RCVD, RCV_SYNACK, ESTABLISHED, BOTH), /* simultaneous open, Figure 8 */
    T(SYN_RCVD, RCV_FIN, CLOSE_WAIT, BOTH),
    T(SYN_RCVD, RCV_FIN_ACK_FIN, CLOSE_WAIT, BOTH),
    T(SYN_RCVD, USER_CLOSE, FIN_WAIT_1, HOST), /* 3.10.4 */
    T(SYN_RCVD, SENT_FIN, FIN_WAIT_1, MONITOR),
    T(SYN_RCVD, SENT_FIN_EARLY, FIN_WAIT_1, MONITOR),
    /* an end host that opened passively returns to LISTEN instead (3.10.7.4) */
    RST_ROWS(SYN_RCVD, MONITOR),

    /* ESTABLISHED (3.10.7.4 eighth: FIN -> CLOSE-WAIT) */
    T(ESTABLISHED, RCV_FIN, CLOSE_WAIT, BOTH),
    T(ESTABLISHED, RCV_FIN_ACK_FIN, CLOSE_WAIT, BOTH),
    T(ESTABLISHED, USER_CLOSE, FIN_WAIT_1, HOST),
    T(ESTABLISHED, SENT_FIN, FIN_WAIT_1, MONITOR),
    T(ESTABLISHED, SENT_FIN_EARLY, FIN_WAIT_1, MONITOR),
    RST_ROWS(ESTABLISHED, BOTH),

    /* FIN-WAIT-1 (3.10.7.4 fifth: our FIN acknowledged -> FIN-WAIT-2;
     * eighth: FIN -> CLOSING, or TIME-WAIT if our FIN is acknowledged,
     * "perhaps in this segment") */
    T(FIN_WAIT_1, RCV_ACK_FIN, FIN_WAIT_2, BOTH),
    T(FIN_WAIT_1, RCV_FIN, CLOSING, BOTH),
    T(FIN_WAIT_1, RCV_FIN_ACK_FIN, TIME_WAIT, BOTH),
    RST_ROWS(FIN_WAIT_1, BOTH),

    /* FIN-WAIT-2 (3.10.7.4 eighth) */
    T(FIN_WAIT_2, RCV_FIN, TIME_WAIT, BOTH),
    T(FIN_WAIT_2, RCV_FIN_ACK_FIN, TIME_WAIT, BOTH),
    RST_ROWS(FIN_WAIT_2, BOTH),

    /* CLOSING (3.10.7.4 fifth: our FIN acknowledged -> TIME-WAIT) */
    T(CLOSING, RCV_ACK_FIN, TIME_WAIT, BOTH),
    T(CLOSING, RCV_FIN_ACK_FIN, TIME_WAIT, BOTH),
    RST_ROWS(CLOSING, BOTH),

    /* TIME-WAIT: a FIN restarts the 2 MSL timer, no new state */
    RST_ROWS(TIME_WAIT, BOTH),

    /* CLOSE-WAIT: our close sends FIN -> LAST-ACK; a FIN sent before the
     * peer's FIN was acknowledged is a simultaneous close -> CLOSING
     * (3.6, Figure 13) */
    T(CLOSE_WAIT, USER_CLOSE, LAST_ACK, HOST),
    T(CLOSE_WAIT, SENT_FIN, LAST_ACK, MONITOR),
    T(CLOSE_WAIT, SENT_FIN_EARLY, CLOSING, MONITOR),
    RST_ROWS(CLOSE_WAIT, BOTH),

    /* LAST-ACK (3.10.7.4 fifth: our FIN acknowledged -> CLOSED) */
    T(LAST_ACK, RCV_ACK_FIN, CLOSED, BOTH),
    T(LAST_ACK, RCV_FIN_ACK_FIN, CLOSED, BOTH),
    RST_ROWS(LAST_ACK, BOTH),
};

const char *const mos_tcp_state_names[MOS_TCPS_COUNT] = {
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
    "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK",
};

const char *const mos_tcp_input_names[MOS_TCP_NINPUTS] = {
    [MOS_TCP_RCV_SYN] = "RCV_SYN",
    [MOS_TCP_RCV_SYNACK] = "RCV_SYNACK",
    [MOS_TCP_RCV_ACK_SYN] = "RCV_ACK_SYN",
    [MOS_TCP_RCV_ACK_FIN] = "RCV_ACK_FIN",
    [MOS_TCP_RCV_FIN] = "RCV_FIN",
    [MOS_TCP_RCV_FIN_ACK_FIN] = "RCV_FIN_ACK_FIN",
    [MOS_TCP_RCV_RST] = "RCV_RST",
    [MOS_TCP_USER_ACTIVE_OPEN] = "USER_ACTIVE_OPEN",
    [MOS_TCP_USER_PASSIVE_OPEN] = "USER_PASSIVE_OPEN",
    [MOS_TCP_USER_CLOSE] = "USER_CLOSE",
    [MOS_TCP_SENT_SYN] = "SENT_SYN",
    [MOS_TCP_SENT_SYNACK] = "SENT_SYNACK",
    [MOS_TCP_SENT_FIN] = "SENT_FIN",
    [MOS_TCP_SENT_FIN_EARLY] = "SENT_FIN_EARLY",
    [MOS_TCP_SENT_RST] = "SENT_RST",
};

int mos_tcp_ep_action(mos_tcp_ep_t *ep, int input, mos_tcp_eff_t *eff)
{
    mos_tcp_eff_clear(eff);
    if (input < 0 || input >= MOS_TCP_NINPUTS) return -1;
    return mos_tcp_ep_step(ep, input, eff);
}
