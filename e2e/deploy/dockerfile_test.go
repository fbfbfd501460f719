package deploy

import (
	"bufio"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerfiles are the Dockerfiles checked by TestDockerfileRules (hadolint is not available
// here; these are the rules that matter).
var dockerfiles = []string{"services/Dockerfile"}

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, rel string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(strings.NewReader(readFile(t, rel)))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

var (
	argRef    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}?`)
	hasDigit  = regexp.MustCompile(`[0-9]`)
	digestRef = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
)

// TestDockerfileRules: every base image is pinned (a digest, or a tag naming a version; never
// latest or untagged) once ARG defaults are substituted, or is a previous stage or scratch; the
// final stage runs as a non-root USER and has a HEALTHCHECK; no ADD fetches a URL; the image
// carries the OCI source, version and revision labels.
func TestDockerfileRules(t *testing.T) {
	for _, rel := range dockerfiles {
		t.Run(filepath.Base(rel), func(t *testing.T) {
			ins := parseDockerfile(t, rel)
			args := map[string]string{}
			stages := map[string]bool{}
			var final []instruction
			for _, in := range ins {
				switch in.cmd {
				case "ARG":
					if name, def, ok := strings.Cut(in.args, "="); ok {
						args[name] = strings.Trim(def, `"`)
					}
				case "FROM":
					final = nil
					fields := strings.Fields(in.args)
					var image string
					for _, f := range fields {
						if !strings.HasPrefix(f, "--") {
							image = f
							break
						}
					}
					if len(fields) >= 3 && strings.EqualFold(fields[len(fields)-2], "AS") {
						stages[strings.ToLower(fields[len(fields)-1])] = true
					}
					image = argRef.ReplaceAllStringFunc(image, func(ref string) string {
						return args[argRef.FindStringSubmatch(ref)[1]]
					})
					if err := pinned(image, stages); err != "" {
						t.Errorf("%s:%d: FROM %s: %s", rel, in.line, image, err)
					}
				case "ADD":
					if strings.Contains(in.args, "://") {
						t.Errorf("%s:%d: ADD of a URL (download in a build stage and verify a checksum instead): %s", rel, in.line, in.args)
					}
				}
				final = append(final, in)
			}
			var user string
			var health, labels string
			for _, in := range final {
				switch in.cmd {
				case "USER":
					user = in.args
				case "HEALTHCHECK":
					health = in.args
				case "LABEL":
					labels += in.args + " "
				}
			}
			if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
				t.Errorf("%s: the final stage must run as a non-root USER, got %q", rel, user)
			}
			if health == "" || strings.HasPrefix(strings.ToUpper(health), "NONE") {
				t.Errorf("%s: the final stage has no HEALTHCHECK", rel)
			}
			for _, l := range []string{"org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision"} {
				if !strings.Contains(labels, l+"=") {
					t.Errorf("%s: the final stage lacks the label %s", rel, l)
				}
			}
		})
	}
}

// pinned returns why image is not a pinned base, or "".
func pinned(image string, stages map[string]bool) string {
	switch {
	case image == "scratch", stages[strings.ToLower(image)]:
		return ""
	case digestRef.MatchString(image):
		return ""
	}
	name := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return "untagged (pin a version tag or a digest)"
	case tag == "latest":
		return "latest is not pinned"
	case !hasDigit.MatchString(tag):
		return "tag " + tag + " names no version"
	}
	return ""
}

func TestPinnedRule(t *testing.T) {
	stages := map[string]bool{"build": true}
	for image, ok := range map[string]bool{
		"golang:1.26.8-bookworm": true,
		"scratch":                true,
		"build":                  true,
		"golang":                 false,
		"golang:latest":          false,
		"gcr.io/distroless/static-debian12:nonroot":                  false,
		"localhost:5000/img":                                         false,
		"gcr.io/distroless/static@sha256:" + strings.Repeat("a", 64): true,
	} {
		if got := pinned(image, stages) == ""; got != ok {
			t.Errorf("pinned(%q) = %v, want %v", image, got, ok)
		}
	}
}
