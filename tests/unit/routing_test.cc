#include "protocols/smtp/routing.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>

namespace rp::smtp {
namespace {

sockaddr_storage v4(const char* text) {
    sockaddr_storage ss{};
    auto& in = reinterpret_cast<sockaddr_in&>(ss);
    in.sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, text, &in.sin_addr), 1);
    return ss;
}

sockaddr_storage v6(const char* text) {
    sockaddr_storage ss{};
    auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
    in6.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
    return ss;
}

config::Settings settings() {
    config::Settings s;
    s.domains.push_back({"Example.TEST", 1});
    s.domains.push_back({"other.test", 2});
    config::UserSettings demo;
    demo.address = "Demo@example.test";
    demo.password = "demo";
    s.users.push_back(demo);
    config::UserSettings bob;
    bob.address = "bob@other.test";
    bob.password = "b";
    s.users.push_back(bob);
    s.smtp.trusted_networks = {"192.0.2.0/24", "2001:db8::/32", "10.1.2.3"};
    return s;
}

// Proves CIDR parsing and matching for IPv4, IPv6, host routes and IPv4-mapped clients.
TEST(Routing, CidrContains) {
    auto net = Cidr::parse("192.0.2.0/24");
    ASSERT_TRUE(net.ok());
    EXPECT_TRUE(net->contains(v4("192.0.2.77")));
    EXPECT_FALSE(net->contains(v4("192.0.3.1")));
    EXPECT_TRUE(net->contains(v6("::ffff:192.0.2.9")));
    auto odd = Cidr::parse("10.0.0.0/9");
    ASSERT_TRUE(odd.ok());
    EXPECT_TRUE(odd->contains(v4("10.127.255.255")));
    EXPECT_FALSE(odd->contains(v4("10.128.0.0")));
    auto six = Cidr::parse("2001:db8::/32");
    ASSERT_TRUE(six.ok());
    EXPECT_TRUE(six->contains(v6("2001:db8:ffff::1")));
    EXPECT_FALSE(six->contains(v6("2001:db9::1")));
    EXPECT_FALSE(six->contains(v4("192.0.2.1")));
    for (const char* bad : {"", "/8", "300.1.1.1", "10.0.0.0/33", "::1/129", "10.0.0.0/x",
                            "10.0.0.0/-1", "host.example"}) {
        EXPECT_FALSE(Cidr::parse(bad).ok()) << bad;
    }
}

// Proves the never-an-open-relay rule and the local lookups: unknown local users are
// refused, other domains need a trusted or authenticated client, case does not matter.
TEST(Routing, Verdicts) {
    std::string error;
    auto d = Directory::build(settings(), 2, &error);
    ASSERT_TRUE(d.ok()) << error;
    EXPECT_EQ(d->route(SmtpAddress::make("demo", "EXAMPLE.test", false), false),
              RcptVerdict::accept_local);
    EXPECT_EQ(d->route(SmtpAddress::make("DEMO", "example.test", false), false),
              RcptVerdict::accept_local);
    EXPECT_EQ(d->route(SmtpAddress::make("nobody", "example.test", false), false),
              RcptVerdict::no_such_user);
    EXPECT_EQ(d->route(SmtpAddress::make("x", "elsewhere.test", false), false),
              RcptVerdict::relay_denied);
    EXPECT_EQ(d->route(SmtpAddress::make("x", "elsewhere.test", false), true),
              RcptVerdict::accept_relay);
    // RFC 5321 4.5.1: postmaster of every local domain, and the bare form, is accepted.
    EXPECT_EQ(d->route(SmtpAddress::make("postmaster", "other.test", false), false),
              RcptVerdict::accept_local);
    EXPECT_EQ(d->find(SmtpAddress::make("postmaster", "other.test", false))->address,
              "bob@other.test");
    EXPECT_TRUE(d->trusted(v4("192.0.2.1")));
    EXPECT_TRUE(d->trusted(v4("10.1.2.3")));
    EXPECT_FALSE(d->trusted(v4("10.1.2.4")));
    EXPECT_FALSE(d->trusted(v4("127.0.0.1")));
}

// Proves every account has one owner shard in range, stable for the same name.
TEST(Routing, OwnerShards) {
    std::string error;
    auto d = Directory::build(settings(), 4, &error);
    ASSERT_TRUE(d.ok());
    for (const Account& a : d->accounts()) {
        EXPECT_LT(a.owner_shard, 4u);
        EXPECT_EQ(a.owner_shard, Directory::owner_of(a.address, 4));
    }
    EXPECT_EQ(d->find_account("DEMO@Example.Test")->address, "demo@example.test");
    config::Settings bad = settings();
    bad.smtp.trusted_networks.push_back("not-a-network");
    EXPECT_FALSE(Directory::build(bad, 1, &error).ok());
    EXPECT_NE(error.find("not-a-network"), std::string::npos);
}

}  // namespace
}  // namespace rp::smtp
