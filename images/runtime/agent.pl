#!/usr/bin/perl
# kfarm's agent in a builder container: runs the commands kfarm sends over this one stream (one `exec` of the
# engine per container), so a target's steps cost processes inside the container, not engine calls.
# perl-base is Essential in every Debian release, so every builder image has this interpreter.
#
# Frames, both ways: type (1 byte), command id (u32 BE), payload length (u32 BE), payload.
#   to the agent:   S start (payload: workdir \0 argc \0 argv... \0 env KEY=VALUE...),
#                   I stdin bytes, E end of stdin, K kill
#   from the agent: O stdout bytes, R stderr bytes, X exit (payload: the exit code, 128+N for signal N)
# Each command runs in a process group of its own, which K kills. The end of the agent's stdin (kfarm is
# gone) kills every command, stops the container and ends the agent.
use strict;
use warnings;
use POSIX qw(:sys_wait_h EAGAIN EINTR);
use IO::Select;
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);

# How long a command's output pipes may stay open after it exited (held by something it left running).
my $GRACE = 2;
my %commands;    # id => { pid, pipes => { O => fh, R => fh }, in => fh, pending => '', closing, status, exited_at }
my %pid_of;      # pid => id
my $from_kfarm = '';
# SIGCHLD writes to this pipe, which select watches: an exit is noticed at once, also when it comes just before
# select is entered.
pipe(my $wake_r, my $wake_w) or die "kfarm-agent: pipe: $!";
nonblocking($_) for ($wake_r, $wake_w);
my $readers = IO::Select->new(\*STDIN, $wake_r);
my $writers = IO::Select->new();
$SIG{CHLD} = sub { syswrite($wake_w, 'c') };
$SIG{PIPE} = 'IGNORE';   # a command that stops reading its stdin is not the agent's end
binmode STDIN;
binmode STDOUT;

sub send_frame {
  my ($type, $id, $data) = @_;
  my $buf = pack('aNN', $type, $id, length $data) . $data;
  while (length $buf) {
    my $n = syswrite(STDOUT, $buf);
    if (!defined $n) { next if $! == EINTR; exit 0 }    # kfarm is gone
    substr($buf, 0, $n, '');
  }
}

sub nonblocking { my ($fh) = @_; fcntl($fh, F_SETFL, fcntl($fh, F_GETFL, 0) | O_NONBLOCK) }

sub start_command {
  my ($id, $payload) = @_;
  my ($workdir, $argc, @rest) = split /\0/, $payload, -1;
  my @argv = splice(@rest, 0, $argc);
  my ($in_r, $in_w, $out_r, $out_w, $err_r, $err_w);
  pipe($in_r, $in_w) && pipe($out_r, $out_w) && pipe($err_r, $err_w) or return refuse($id, "pipe: $!");
  my $pid = fork();
  return refuse($id, "fork: $!") unless defined $pid;
  if ($pid == 0) {
    setpgrp(0, 0);
    open(STDIN, '<&', $in_r);
    open(STDOUT, '>&', $out_w);
    open(STDERR, '>&', $err_w);
    $SIG{PIPE} = 'DEFAULT';
    for (@rest) { my ($k, $v) = split /=/, $_, 2; $ENV{$k} = $v }
    if (length $workdir && !chdir $workdir) { print STDERR "kfarm-agent: cd $workdir: $!\n"; POSIX::_exit(126) }
    { no warnings 'exec'; exec { $argv[0] } @argv; }
    print STDERR "kfarm-agent: $argv[0]: $!\n";
    POSIX::_exit(127);
  }
  close($_) for ($in_r, $out_w, $err_w);
  nonblocking($_) for ($in_w, $out_r, $err_r);
  $commands{$id} = { pid => $pid, pipes => { O => $out_r, R => $err_r }, in => $in_w, pending => '' };
  $pid_of{$pid} = $id;
  $readers->add($out_r, $err_r);
}

# A command that could not even start (no memory for a fork) ends as one the kernel would not run: 126.
sub refuse {
  my ($id, $why) = @_;
  send_frame('R', $id, "kfarm-agent: $why\n");
  send_frame('X', $id, '126');
}

sub close_stdin {
  my ($c) = @_;
  return unless $c->{in};
  $writers->remove($c->{in});
  close($c->{in});
  delete $c->{in};
}

sub on_frame {
  my ($type, $id, $payload) = @_;
  if ($type eq 'S') { start_command($id, $payload); return }
  my $c = $commands{$id} or return;
  if ($type eq 'I' && $c->{in}) { $c->{pending} .= $payload; $writers->add($c->{in}) }
  elsif ($type eq 'E') { $c->{pending} eq '' ? close_stdin($c) : ($c->{closing} = 1) }
  elsif ($type eq 'K') { kill('KILL', -$c->{pid}) }
}

sub read_kfarm {
  my $n = sysread(STDIN, $from_kfarm, 1 << 16, length $from_kfarm);
  return if !defined $n && ($! == EINTR || $! == EAGAIN);
  if (!$n) {
    # kfarm is gone: so is every command, and the container (its init passes TERM on to the main process).
    kill('KILL', -$_->{pid}) for values %commands;
    kill('TERM', 1);
    exit 0;
  }
  while (length $from_kfarm >= 9) {
    my ($type, $id, $len) = unpack('aNN', $from_kfarm);
    last if length $from_kfarm < 9 + $len;
    my $payload = substr($from_kfarm, 9, $len);
    substr($from_kfarm, 0, 9 + $len, '');
    on_frame($type, $id, $payload);
  }
}

sub read_output {
  my ($fh) = @_;
  for my $id (keys %commands) {
    my $pipes = $commands{$id}{pipes};
    for my $type (keys %$pipes) {
      next unless $pipes->{$type} == $fh;
      my $n = sysread($fh, my $data, 1 << 16);
      return if !defined $n && ($! == EINTR || $! == EAGAIN);
      if ($n) { send_frame($type, $id, $data); return }
      $readers->remove($fh);
      close($fh);
      delete $pipes->{$type};
      return;
    }
  }
}

sub write_stdin {
  my ($fh) = @_;
  for my $c (values %commands) {
    next unless $c->{in} && $c->{in} == $fh;
    my $n = syswrite($fh, $c->{pending});
    if (!defined $n) { close_stdin($c) unless $! == EAGAIN || $! == EINTR; return }
    substr($c->{pending}, 0, $n, '');
    return if length $c->{pending};
    $writers->remove($fh);
    close_stdin($c) if $c->{closing};
    return;
  }
}

sub reap {
  while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
    my $id = delete $pid_of{$pid};
    next unless defined $id;
    $commands{$id}{status} = WIFSIGNALED($?) ? 128 + WTERMSIG($?) : WEXITSTATUS($?);
    $commands{$id}{exited_at} = time;
  }
}

# Exited and its output read to the end (or its pipes held open past the grace time): its exit goes out.
sub finish_exited {
  for my $id (keys %commands) {
    my $c = $commands{$id};
    next unless defined $c->{status};
    my @open = values %{ $c->{pipes} };
    next if @open && time - $c->{exited_at} < $GRACE;
    for my $fh (@open) { $readers->remove($fh); close($fh) }
    close_stdin($c);
    send_frame('X', $id, $c->{status});
    delete $commands{$id};
  }
}

while (1) {
  my ($readable, $writable) = IO::Select->select($readers, $writers, undef, 1);
  for my $fh (@{ $readable // [] }) {
    if ($fh == \*STDIN) { read_kfarm() }
    elsif ($fh == $wake_r) { sysread($wake_r, my $drain, 512) }
    else { read_output($fh) }
  }
  write_stdin($_) for @{ $writable // [] };
  reap();
  finish_exited();
}
