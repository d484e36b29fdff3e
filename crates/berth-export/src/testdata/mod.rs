//! Stacks the tests render: the demo stack as shipped, and one stack that
//! uses every manifest feature an export maps (or says it cannot).

use berth_core::model::Stack;

/// `examples/demo/berth.toml`, the stack `make demo` runs.
pub fn demo() -> Stack {
    parse(
        "examples/demo/berth.toml",
        include_str!("../../../../examples/demo/berth.toml"),
    )
}

/// Every feature: env with characters systemd and YAML treat specially,
/// udp and all-address ports, a command health check with a start period
/// and a progress check, user, capabilities, labels, memory, restart
/// policies, several secrets, a multi-word entrypoint, every gate list, a
/// custom network name.
pub fn every_feature() -> Stack {
    parse("every.toml", include_str!("every.toml"))
}

fn parse(file: &str, text: &str) -> Stack {
    berth_core::manifest::parse_stack(file, text, &|p| Err(format!("no include {p} in tests")))
        .unwrap_or_else(|d| panic!("{file} is valid: {d}"))
}
