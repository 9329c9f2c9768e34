# tests/imap_service.cmake: IMAP on the real daemon (protocols/imap/imap_session over
# protocols/common/mail_access): imaplib, raw sockets and curl against ringpostd.
rp_integration_test(imap_integration SCRIPT integration/test_imap.py TIMEOUT 600 SANITIZE)
