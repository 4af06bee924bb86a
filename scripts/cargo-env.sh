# Sourced by the scripts: puts a Rust toolchain (cargo) on PATH, installing one with rustup when
# there is none (Debian 12's own rustc is too old for this crate).
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    elif command -v curl >/dev/null 2>&1; then
        echo "installing Rust with rustup (https://rustup.rs)..."
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "cargo is missing: install Rust from https://rustup.rs (apt-get install curl first)" >&2
        exit 1
    fi
fi
