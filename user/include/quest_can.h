/* CAN on Quest-RS: /dev/canN carries Linux SocketCAN's struct can_frame (read returns whole
 * frames, at least one, blocking; write sends whole frames). What SocketCAN sets through
 * setsockopt/netlink is an ioctl here. Mirrors crates/quest-abi/src/can.rs. */
#ifndef QUEST_CAN_H
#define QUEST_CAN_H
#include <stdint.h>

#define CAN_EFF_FLAG 0x80000000U
#define CAN_RTR_FLAG 0x40000000U
#define CAN_ERR_FLAG 0x20000000U
#define CAN_SFF_MASK 0x000007FFU
#define CAN_EFF_MASK 0x1FFFFFFFU

struct can_frame {
    uint32_t can_id;
    uint8_t len; /* can_dlc */
    uint8_t __pad;
    uint8_t __res0;
    uint8_t len8_dlc;
    uint8_t data[8] __attribute__((aligned(8)));
};

struct can_filter {
    uint32_t can_id;
    uint32_t can_mask;
};

struct quest_can_stats {
    uint32_t bitrate;
    uint32_t state; /* 0 error-active, 1 error-warning, 2 error-passive, 3 bus-off */
    uint64_t tx_frames, rx_frames, rx_filtered, rx_overruns, rx_dropped;
    uint64_t bus_errors, bus_off, restarts;
    uint32_t tx_errors, rx_errors;
    uint64_t latency_median_ns, latency_max_ns, latency_samples;
};

#define QUEST_CAN_SET_BITRATE 0x51430001U
#define QUEST_CAN_SET_FILTER 0x51430002U
#define QUEST_CAN_GET_STATS 0x51430003U
#define QUEST_CAN_RESTART 0x51430004U

#endif
