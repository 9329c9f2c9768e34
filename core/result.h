// core/result.h: Status and Result<T>, the error values of ringpost.
//
// Operating errors (ENOSPC, EIO, peer reset, DNS timeout) travel as Status values. Nothing on
// a core thread throws. A negative errno becomes a Status only in core/io_errno.cc; a Status
// becomes a wire reply only in protocols/common/reply_table.cc.
#pragma once

#include <cstdint>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

#include "core/assert.h"

namespace rp {

enum class Status : std::uint8_t {
    ok = 0,
    // Data.
    corrupt,      // A checksum or structural check failed.
    truncated,    // The bytes end before the record or message does.
    invalid,      // A value is out of range or malformed (caller or config input).
    unsupported,  // A version or feature we do not know.
    // Lookup.
    not_found,
    exists,
    // Capacity and flow.
    no_space,     // ENOSPC / EDQUOT.
    too_big,      // Larger than a configured limit.
    full,         // A fixed-capacity pool, queue or table is full (backpressure).
    busy,         // Held by someone else (a mailbox in use, a segment being read).
    again,        // Try later (EAGAIN, ENOBUFS).
    // Operating errors.
    io,           // EIO and other I/O failures.
    closed,       // Peer closed or reset the connection.
    timeout,
    refused,      // Connection refused, or a policy refusal.
    permission,   // EACCES / EPERM.
    quarantined,  // A mailbox that holds a corrupt record; its owner may not serve it.
    cancelled,
    tls,          // TLS handshake or record failure.
};

std::string_view status_name(Status status) noexcept;

// Result<T> holds a T or a Status other than ok.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : status_(Status::ok) { new (&value_) T(std::move(value)); }  // NOLINT
    Result(Status status) : status_(status) { RP_ASSERT(status != Status::ok); }  // NOLINT
    Result(const Result& other) : status_(other.status_) {
        if (ok()) new (&value_) T(other.value_);
    }
    Result(Result&& other) noexcept : status_(other.status_) {
        if (ok()) new (&value_) T(std::move(other.value_));
    }
    Result& operator=(Result other) noexcept {
        this->~Result();
        new (this) Result(std::move(other));
        return *this;
    }
    ~Result() {
        if (ok()) value_.~T();
    }

    bool ok() const noexcept { return status_ == Status::ok; }
    explicit operator bool() const noexcept { return ok(); }
    Status status() const noexcept { return status_; }

    T& value() & {
        RP_ASSERT(ok());
        return value_;
    }
    const T& value() const& {
        RP_ASSERT(ok());
        return value_;
    }
    T&& value() && {
        RP_ASSERT(ok());
        return std::move(value_);
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

private:
    Status status_;
    union {
        T value_;
    };
};

}  // namespace rp
