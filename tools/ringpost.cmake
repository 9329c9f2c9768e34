# ringpost: the admin command (store, mailbox; later user, queue).
add_executable(ringpost ringpost.cc)
target_link_libraries(ringpost PRIVATE rp_storage rp_config rp_auth)
