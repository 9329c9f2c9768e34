# SMTP reception on the real daemon (protocols/smtp/smtp_session, routing, shard_mail).
rp_unit_test(routing_test SOURCES unit/routing_test.cc LIBS rp_mail_service)
rp_integration_test(smtp_integration SCRIPT integration/test_smtp.py TIMEOUT 600 SANITIZE)
rp_integration_test(smtp_crash SCRIPT integration/test_smtp_crash.py TIMEOUT 600)
rp_integration_test(bench_ringpostd SCRIPT integration/test_bench_ringpostd.py TIMEOUT 300)
rp_unit_test(commit_policy_test SOURCES unit/commit_policy_test.cc LIBS rp_mail_service)
