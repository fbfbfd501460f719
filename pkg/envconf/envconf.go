// Package envconf loads a service's config struct from MAILPIPE_* environment variables, with an
// optional flag mirror, and gives Validate methods one convention for reporting problems.
//
// Fields opt in with struct tags:
//
//	type Config struct {
//		Brokers []string      `env:"BROKERS" default:"127.0.0.1:9092" usage:"seed brokers"`
//		Timeout time.Duration `env:"TIMEOUT" default:"10s"`
//		Redis   redisconn.Config `env:"REDIS"` // nested: MAILPIPE_REDIS_URL, …
//	}
//
// Loaded with prefix "MAILPIPE", Brokers reads MAILPIPE_BROKERS and, with WithFlags, the flag
// -brokers. Precedence: flag, then environment, then the default tag. An empty environment
// variable counts as unset, so the default applies; this is how compose files and Helm templates
// render optional values; a lone "," sets a list to empty. Supported field types: string, bool, signed and unsigned integers,
// floats, time.Duration, []string (comma-separated, blanks trimmed, empty items dropped) and any
// type whose pointer implements encoding.TextUnmarshaler (slog.Level, netip.Addr, …). A nested
// struct field with an env tag adds "<TAG>_" to the names below it; without a tag its fields are
// read with the enclosing prefix. Fields without an env tag are left alone.
package envconf

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
)

// Validator is implemented by config structs that check themselves. Load calls it on the loaded
// value. Join the problems with errors.Join and Prefix each nested section:
//
//	func (c Config) Validate() error {
//		var errs []error
//		if len(c.Brokers) == 0 {
//			errs = append(errs, errors.New("brokers is required"))
//		}
//		errs = append(errs, envconf.Prefix("redis", c.Redis.Validate()))
//		return errors.Join(errs...)
//	}
//
// which reports, one per line, "brokers is required" and "redis: url is required".
type Validator interface {
	Validate() error
}

// Prefix returns err with "section: " in front of every error it joins (recursively), so a
// joined list from a nested Validate reads as "kafka: brokers is required" line by line. It
// returns nil for a nil err, keeps errors.Is/As working, and leaves the errors otherwise as is.
func Prefix(section string, err error) error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, Prefix(section, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", section, err)
}

// Option configures Load.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	fs   *flag.FlagSet
	args []string
}

// WithFlags registers one flag per field on fs and parses args with it after the environment
// was read, so flags win. A flag's name is the field's env name without the prefix, lower-cased,
// with "-" for "_" (MAILPIPE_KAFKA_BROKERS → -kafka-brokers); its usage text ends with the env
// name. Flags the caller registered on fs beforehand (say -validate) are parsed too; the
// remaining positional args are fs.Args().
func WithFlags(fs *flag.FlagSet, args []string) Option {
	return optionFunc(func(o *options) { o.fs, o.args = fs, args })
}

// Var describes one configurable field.
type Var struct {
	Name    string // environment variable, e.g. MAILPIPE_KAFKA_BROKERS
	Flag    string // flag name used by WithFlags, e.g. kafka-brokers
	Default string // the default tag, "" when there is none
	Usage   string // the usage tag
}

// Vars lists the variables a T reads with the given prefix, in field order. Use it to document a
// service's config or to render a ConfigMap.
func Vars[T any](prefix string) ([]Var, error) {
	var zero T
	fields, err := collect(reflect.ValueOf(&zero).Elem(), envPrefix(prefix), envPrefix(prefix))
	if err != nil {
		return nil, err
	}
	out := make([]Var, 0, len(fields))
	for _, f := range fields {
		out = append(out, f.Var)
	}
	return out, nil
}

// Load returns a T filled from the default tags, then env.Getenv, then (WithFlags) the flags,
// and validated by T's Validate method when it has one. prefix is the variable prefix without
// the trailing underscore ("MAILPIPE"). Every error wraps app.ErrConfig, so a main that returns
// it exits with code 2; parse errors name the variable and are all reported at once.
func Load[T any](env app.Env, prefix string, opts ...Option) (T, error) {
	var cfg T
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	getenv := env.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fields, err := collect(reflect.ValueOf(&cfg).Elem(), envPrefix(prefix), envPrefix(prefix))
	if err != nil {
		return cfg, app.ConfigError(err)
	}

	var errs []error
	for _, f := range fields {
		raw, source := f.Default, "default"
		if v := getenv(f.Name); v != "" {
			raw, source = v, "environment"
		}
		if raw == "" {
			continue
		}
		if err := set(f.value, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", f.Name, source, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, app.ConfigError(err)
	}

	if o.fs != nil {
		for _, f := range fields {
			o.fs.Var(flagValue{f.value}, f.Flag, strings.TrimSpace(f.Usage+" (env "+f.Name+")"))
		}
		if err := o.fs.Parse(o.args); err != nil {
			return cfg, app.ConfigError(fmt.Errorf("parsing flags: %w", err))
		}
	}

	if v, ok := any(&cfg).(Validator); ok {
		if err := v.Validate(); err != nil {
			return cfg, app.ConfigError(err)
		}
	}
	return cfg, nil
}

type field struct {
	Var
	value reflect.Value
}

func envPrefix(prefix string) string {
	if prefix == "" {
		return ""
	}
	return strings.TrimSuffix(prefix, "_") + "_"
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// collect walks v (a struct) and returns its tagged leaf fields with full names. root is the
// top-level prefix, which flag names leave out; prefix includes the nested sections.
func collect(v reflect.Value, root, prefix string) ([]field, error) {
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("envconf: config must be a struct, got %s", v.Type())
	}
	var out []field
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, hasTag := sf.Tag.Lookup("env")
		fv := v.Field(i)
		if sf.Type.Kind() == reflect.Struct && !reflect.PointerTo(sf.Type).Implements(textUnmarshaler) {
			nested := prefix
			if tag != "" {
				nested = prefix + tag + "_"
			}
			sub, err := collect(fv, root, nested)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		if !hasTag || tag == "" {
			continue
		}
		if !supported(sf.Type) {
			return nil, fmt.Errorf("envconf: field %s.%s: unsupported type %s", t.Name(), sf.Name, sf.Type)
		}
		name := prefix + tag
		flagName := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, root), "_", "-"))
		out = append(out, field{
			Var:   Var{Name: name, Flag: flagName, Default: sf.Tag.Get("default"), Usage: sf.Tag.Get("usage")},
			value: fv,
		})
	}
	return out, nil
}

var durationType = reflect.TypeFor[time.Duration]()

func supported(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(textUnmarshaler) || t == durationType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// set parses raw into v according to v's type.
func set(v reflect.Value, raw string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(raw))
	}
	if v.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(raw), 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Slice:
		var items []string
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items).Convert(v.Type()))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// flagValue adapts a struct field to flag.Value.
type flagValue struct{ v reflect.Value }

func (f flagValue) Set(s string) error { return set(f.v, s) }

func (f flagValue) String() string {
	if !f.v.IsValid() {
		return "" // flag.isZeroValue calls String on a zero flagValue
	}
	if m, ok := f.v.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err != nil {
			return ""
		}
		return string(b)
	}
	if f.v.Kind() == reflect.Slice {
		items := make([]string, f.v.Len())
		for i := range items {
			items[i] = f.v.Index(i).String()
		}
		return strings.Join(items, ",")
	}
	return fmt.Sprint(f.v.Interface())
}

// IsBoolFlag lets "-flag" stand for "-flag=true" on bool fields.
func (f flagValue) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }
