# SMTP reception on the real daemon (protocols/smtp/smtp_session, protocols/common/shard_mail).
rp_integration_test(smtp_integration SCRIPT integration/test_smtp.py TIMEOUT 600)
