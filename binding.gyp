{
  "targets": [
    {
      "target_name": "sockguard",
      "sources": [
        "native/sys.cc",
        "native/poll_epoll.cc",
        "native/poll_kqueue.cc",
        "native/poll_thread.cc",
        "native/loop.cc",
        "native/socket.cc",
        "native/tls.cc",
        "native/park.cc",
        "native/pass.cc",
        "native/binding.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-fno-exceptions", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-fno-exceptions", "-O2"]
      },
      "conditions": [
        ["OS=='win'", { "defines": ["SG_UNSUPPORTED_PLATFORM"] }],
        ["OS=='linux'", { "ldflags": ["-Wl,-z,lazy"] }]
      ]
    }
  ]
}
