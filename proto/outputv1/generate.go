// Package outputv1 holds the generated gRPC code for output.proto, the
// contract between camd and its output plugins. Plugin authors in Go use the
// sdk package instead; authors in other languages start from output.proto.
package outputv1

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative output.proto"
