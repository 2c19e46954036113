fn main() { println!("minipay-perf: benchmarks arrive with the transfers issue"); }
