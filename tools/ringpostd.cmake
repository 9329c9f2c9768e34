# ringpostd: the daemon (engine, config, SMTP reception on the store).
add_executable(ringpostd ringpostd.cc)
target_link_libraries(ringpostd PRIVATE rp_relay_agent rp_mail_service rp_core rp_config)
if(NOT RP_SANITIZE)
  # mimalloc replaces malloc for the whole process; the sanitizers need their own.
  target_link_libraries(ringpostd PRIVATE mimalloc)
  target_compile_definitions(ringpostd PRIVATE RP_MIMALLOC=1)
endif()
