/* Intrusive singly linked FIFO queues: the element has a `next` pointer, its owner a head
 * and a tail. Macros, so that every element type (loop tasks, jobs, batched writes) shares
 * the same few lines instead of repeating them. No locking: the owner's. */
#pragma once

#include <stddef.h>

/* Appends item at the tail. */
#define KH_FIFO_PUSH(head, tail, item)                                                           \
        do {                                                                                     \
                (item)->next = NULL;                                                             \
                if (tail)                                                                        \
                        (tail)->next = (item);                                                   \
                else                                                                             \
                        (head) = (item);                                                         \
                (tail) = (item);                                                                 \
        } while (0)

/* Takes the oldest element off into out (NULL when the queue is empty). */
#define KH_FIFO_POP(head, tail, out)                                                             \
        do {                                                                                     \
                (out) = (head);                                                                  \
                if (out) {                                                                       \
                        (head) = (out)->next;                                                    \
                        if (!(head))                                                             \
                                (tail) = NULL;                                                   \
                        (out)->next = NULL;                                                      \
                }                                                                                \
        } while (0)
