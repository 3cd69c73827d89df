fn main() -> std::process::ExitCode {
    metalab::cli::main()
}
