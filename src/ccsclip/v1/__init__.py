"""Generated gRPC stubs for proto/ccsclip/v1/ccsclip.proto (scripts/gen_proto.sh)."""
